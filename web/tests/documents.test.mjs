// Documents in browsers, as people use them: a party adds a document for the
// mediator only; the mediator downloads it (the saved bytes are the
// party's); the party lets it be shared; the mediator shares it as it is
// with the other side, who downloads the same bytes, and then shares a
// version of their own (a redacted copy), with the author told each time; a
// file over the limit is refused at once, with the machine's sentence, and
// nothing is sent; the relay never sees a document's bytes, title or name;
// an upload cut by a kill goes on by itself; a chunk altered on its way
// fails the download, saying which, and nothing is saved. Real relay, real Chromium; screenshots of the new
// screens are kept.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  LAPTOP,
  createMediation,
  filesUnder,
  foundIn,
  goTo,
  inviteLink,
  joinAndAdmit,
  launch,
  person,
  screenshot,
  startRelay,
} from "./support.mjs";

let relay, browser;
before(async () => {
  relay = await startRelay();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  relay?.remove();
});

/** `size` bytes of a made-up file, different for each `seed`. */
function fileBytes(size, seed) {
  const bytes = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** Click `button` and the bytes the page saves, with the file name it gives. */
async function downloaded(page, button) {
  const [download] = await Promise.all([page.waitForEvent("download"), button.click()]);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

const uploads = (who) => who.frames.filter((f) => f.includes('"upload"')).length;

test("a document added for the mediator only, downloaded, shared as it is and as the mediator's own version", { timeout: 300_000 }, async () => {
  const mediator = await person(browser, relay, "Ms Okafor", LAPTOP);
  const family = await person(browser, relay, "Ann Patel");
  const trust = await person(browser, relay, "Tom Reid");
  const m = mediator.page;
  await createMediation(mediator, relay, "Ms Okafor", [
    ["The family", ["Ann Patel"]],
    ["The trust", ["Tom Reid"]],
  ]);
  const links = { family: await inviteLink(mediator, "Ann Patel"), trust: await inviteLink(mediator, "Tom Reid") };
  await joinAndAdmit(mediator, family, links.family);
  await joinAndAdmit(mediator, trust, links.trust);

  // The family adds a statement: its title is the file's name without its
  // extension until they write another; it is for the mediator only unless
  // they say otherwise.
  const statement = fileBytes(3000, 1);
  const f = family.page;
  await f.getByLabel("Choose a file").setInputFiles({ name: "timeline.txt", mimeType: "text/plain", buffer: statement });
  assert.equal(await f.getByLabel("Title").inputValue(), "timeline");
  assert.equal(await f.getByRole("radio", { name: "For the mediator only" }).nth(1).isChecked(), true);
  await f.getByLabel("Title").fill("What happened on the ward");
  await f.getByRole("button", { name: "Add the document" }).click();
  const card = f.locator(".message.document:not(.sending)", { hasText: "What happened on the ward" });
  await card.waitFor();
  await card.getByText("timeline.txt · 3 KB · text").waitFor();
  await card.getByText("for the mediator only").waitFor();
  await screenshot(f, "document-card");

  // The mediator sees it, cannot share it yet, and downloads it: the bytes
  // saved are the family's, under its file name.
  await goTo(mediator, "The family (private)");
  const atMediator = m.locator(".message.document", { hasText: "What happened on the ward" });
  await atMediator.getByText("Ann Patel added a document").waitFor();
  await atMediator.getByRole("button", { name: /Cannot share: for the mediator only/ }).waitFor();
  const got = await downloaded(m, atMediator.getByRole("button", { name: "Download What happened on the ward" }));
  assert.equal(got.name, "timeline.txt");
  assert.deepEqual(got.bytes, statement);

  // The family lets it be shared; the mediator shares it as it is with the trust.
  await card.getByRole("button", { name: "Let the mediator share this" }).click();
  await card.getByText("You let the mediator share this.").waitFor();
  await atMediator.getByRole("button", { name: "Share…" }).click();
  const dialog = m.getByRole("dialog", { name: "Share a document" });
  await dialog.getByRole("radio", { name: "The trust's private room" }).check();
  assert.equal(await dialog.getByRole("radio", { name: "Share this document as it is" }).isChecked(), true);
  await screenshot(m, "document-carry-dialog");
  await dialog.getByRole("button", { name: "Continue" }).click();
  const confirm = m.getByRole("dialog", { name: "Share this document with The trust's private room?" });
  await confirm.getByText("“What happened on the ward” (timeline.txt, 3 KB)").waitFor();
  await screenshot(m, "document-carry-confirmation");
  await confirm.getByRole("button", { name: "Share with The trust's private room" }).click();

  const t = trust.page;
  const carried = t.locator(".message.document.carried", { hasText: "What happened on the ward" });
  await carried.getByText("Shared by the mediator from The family · the document as it was added").waitFor();
  const atTrust = await downloaded(t, carried.getByRole("button", { name: "Download What happened on the ward" }));
  assert.equal(atTrust.name, "timeline.txt");
  assert.deepEqual(atTrust.bytes, statement);
  await card.getByText("Shared with The trust, as it is.").waitFor();
  await screenshot(t, "document-shared");

  // The mediator shares a version of their own: a redacted copy.
  const redacted = fileBytes(2000, 2);
  await atMediator.getByRole("button", { name: "Share…" }).click();
  await dialog.getByRole("radio", { name: "The trust's private room" }).check();
  await dialog.getByRole("radio", { name: "Share my own version" }).check();
  await dialog.getByLabel("Your version (a redacted copy, a summary)").setInputFiles({ name: "timeline-redacted.txt", mimeType: "text/plain", buffer: redacted });
  await dialog.getByLabel("Its title").fill("What happened on the ward (names removed)");
  await dialog.getByRole("button", { name: "Continue" }).click();
  await confirm.getByText("your own version").waitFor();
  await confirm.getByRole("button", { name: "Share with The trust's private room" }).click();
  const own = t.locator(".message.document.carried", { hasText: "names removed" });
  await own.getByText("Shared by the mediator from The family · the mediator's own version").waitFor();
  const ownGot = await downloaded(t, own.getByRole("button", { name: "Download What happened on the ward (names removed)" }));
  assert.equal(ownGot.name, "timeline-redacted.txt");
  assert.deepEqual(ownGot.bytes, redacted);
  await card
    .getByText("Shared with The trust, as the mediator's own version: “Document: What happened on the ward (names removed) (timeline-redacted.txt, 2 KB)”")
    .waitFor();
  assert.equal(await t.locator(".file", { hasText: "timeline.txt" }).count(), 1, "the trust has only the copy shared as it is");

  // A file over 50 MB is refused at once, with the machine's sentence, and nothing is sent.
  const before = uploads(family);
  await f.evaluate(() => {
    const input = document.querySelector('input[type="file"]');
    const files = new DataTransfer();
    files.items.add(new File([new Blob([new Uint8Array(50 * 1024 * 1024 + 1)])], "scan.pdf", { type: "application/pdf" }));
    input.files = files.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  await f.getByRole("alert").getByText("This file cannot be added: scan.pdf is 52.5 MB; documents can be at most 50 MB.").waitFor();
  assert.equal(await f.getByRole("button", { name: "Add the document" }).isDisabled(), true);
  assert.equal(uploads(family), before, "nothing of the large file was sent");

  // The relay kept and saw the documents only sealed: no piece of either
  // file, no title and no file name is on its disk, in its log or in any
  // frame a page sent.
  const seen = [
    ...filesUnder(relay.dataDir),
    { name: "the relay's log", bytes: Buffer.from(relay.log.join(""), "utf8") },
    ...[mediator, family, trust].flatMap((p) => p.frames.map((text, i) => ({ name: `${p.name}'s frame ${i}`, bytes: Buffer.from(text, "utf8") }))),
  ];
  for (const secret of [statement.subarray(1000, 1032), redacted.subarray(500, 532), "What happened on the ward", "timeline", "names removed"]) {
    assert.deepEqual(foundIn(seen, Buffer.from(secret)), [], `${secret} is nowhere at the relay`);
  }
  assert.deepEqual([...mediator.errors, ...family.errors, ...trust.errors], []);
});

test("an upload cut by the relay's kill -9 goes on by itself once the relay is back, and arrives whole; a stopped one is gone", { timeout: 300_000 }, async () => {
  // A relay that takes one chunk a second from each device, so that the
  // kill comes in the middle of the upload.
  const slow = await startRelay({ args: ["--upload-bytes-per-sec", "65552"] });
  try {
    const mediator = await person(browser, slow, "Ms Okafor", LAPTOP);
    const gp = await person(browser, slow, "Dr Shah");
    await createMediation(mediator, slow, "Ms Okafor", [
      ["The practice", ["Dr Shah"]],
      ["The patient", ["Sam Lee"]],
    ]);
    await joinAndAdmit(mediator, gp, await inviteLink(mediator, "Dr Shah"));
    const notes = fileBytes(6 * 65536 - 1000, 3);
    const g = gp.page;
    await g.getByLabel("Choose a file").setInputFiles({ name: "notes.pdf", mimeType: "application/pdf", buffer: notes });
    await g.getByRole("button", { name: "Add the document" }).click();
    const sending = g.locator(".message.document.sending", { hasText: "notes" });
    await sending.getByText("You · sending…").waitFor();
    const progress = sending.getByRole("progressbar", { name: "Sending notes" });
    await g.waitForFunction((bar) => bar.value > 0, await progress.elementHandle());
    assert.ok((await progress.evaluate((bar) => bar.value)) < notes.length, "the kill comes mid-upload");

    await slow.kill();
    await sending.getByText("waiting for the connection").waitFor();
    await screenshot(g, "document-sending");
    await slow.start();

    const card = g.locator(".message.document:not(.sending)", { hasText: "notes" });
    await card.waitFor({ timeout: 60_000 });
    await card.getByText("notes.pdf · 393 KB · PDF").waitFor();
    await goTo(mediator, "The practice (private)");
    const atMediator = mediator.page.locator(".message.document", { hasText: "notes" });
    const got = await downloaded(mediator.page, atMediator.getByRole("button", { name: "Download notes" }));
    assert.equal(got.name, "notes.pdf");
    assert.deepEqual(got.bytes, notes);

    // An upload stopped by the person is gone: no error, nothing left to finish, nothing posted.
    await g.getByLabel("Choose a file").setInputFiles({ name: "rota.pdf", mimeType: "application/pdf", buffer: fileBytes(6 * 65536, 5) });
    await g.getByRole("button", { name: "Add the document" }).click();
    await g.getByRole("button", { name: "Stop sending rota" }).click();
    await g.locator(".message.document.sending").waitFor({ state: "detached" });
    assert.equal(await g.locator(".message.document", { hasText: "rota" }).count(), 0);
    assert.equal(await g.getByText("did not finish").count(), 0);
    assert.equal(await g.getByRole("alert").count(), 0);
    assert.deepEqual([...mediator.errors, ...gp.errors].filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e)), []);
  } finally {
    await slow.stop();
    slow.remove();
  }
});

test("a chunk altered on its way from the relay: the download is refused, saying which, and nothing is saved", { timeout: 300_000 }, async () => {
  const mediator = await person(browser, relay, "Ms Okafor", LAPTOP);
  const solicitor = await person(browser, relay, "Jo Grant");
  // Between the mediator's page and the relay, once armed: one byte of the
  // second chunk a download brings is changed.
  let armed = false;
  await mediator.context.routeWebSocket(/.*/, (page) => {
    const server = page.connectToServer();
    let chunks = 0;
    server.onMessage((message) => {
      let text = String(message);
      const data = /"data":"([^"]+)"/.exec(text);
      if (armed && data && ++chunks === 2) {
        const at = data.index + 8 + 100;
        text = text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
      }
      page.send(text);
    });
    page.onMessage((message) => server.send(message));
  });
  await createMediation(mediator, relay, "Ms Okafor", [
    ["The claimant", ["Jo Grant"]],
    ["The hospital", ["Pat Kerr"]],
  ]);
  await joinAndAdmit(mediator, solicitor, await inviteLink(mediator, "Jo Grant"));
  const report = fileBytes(100_000, 4);
  await solicitor.page.getByLabel("Choose a file").setInputFiles({ name: "expert-report.pdf", mimeType: "application/pdf", buffer: report });
  await solicitor.page.getByRole("button", { name: "Add the document" }).click();
  await solicitor.page.locator(".message.document:not(.sending)", { hasText: "expert-report" }).waitFor();

  await goTo(mediator, "The claimant (private)");
  const m = mediator.page;
  const card = m.locator(".message.document", { hasText: "expert-report" });
  let saved = 0;
  m.on("download", () => saved++);
  armed = true;
  await card.getByRole("button", { name: "Download expert-report" }).click();
  await card
    .getByRole("alert")
    .getByText(/^This document could not be checked and was not saved: part 2 of “expert-report” was damaged or changed on its way from the relay, so the download is refused \(.+\)\.?$/)
    .waitFor();
  await screenshot(m, "document-refused");
  assert.equal(saved, 0, "nothing was saved");

  // Without the tampering, the same document downloads whole.
  armed = false;
  const got = await downloaded(m, card.getByRole("button", { name: "Download expert-report" }));
  assert.deepEqual(got.bytes, report);
});
