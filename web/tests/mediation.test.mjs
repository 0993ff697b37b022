// A whole mediation in browsers, as people run it: a mediator on a laptop
// and three GP partners who have fallen out, one with her solicitor, each in
// their own browser against a real relay that serves the web client. Every
// step is taken on screen — by role, label and text — and checked on the
// other screens: admission after comparing safety codes, private messages, a
// carry refused without consent, consent then carrying word for word and
// reframed with the author told, offers both ways, the gates, the joint room,
// a side room, a withdrawal, the agreement signed by all and checked offline, the close
// and the erasure. axe-core checks each main screen; screenshots are kept.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import {
  LAPTOP,
  createMediation,
  goTo,
  inviteLink,
  joinAndAdmit,
  launch,
  person,
  say,
  screenshot,
  startRelay,
  visit,
} from "./support.mjs";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

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

/** axe-core's serious and critical findings on the page as it is now. */
async function accessibilityProblems(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }),
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

async function accessible(who, screen) {
  assert.deepEqual(await accessibilityProblems(who.page), [], `${screen} (${who.name})`);
  await screenshot(who.page, screen);
}

test("a mediator and three parties, one with two members, run a whole mediation in browsers", { timeout: 600_000 }, async () => {
  const mediator = await person(browser, relay, "Dr Okafor", LAPTOP);
  const adeyemi = await person(browser, relay, "Funmi Adeyemi");
  const bell = await person(browser, relay, "Mark Bell", LAPTOP);
  const chen = await person(browser, relay, "Li Chen");
  const davies = await person(browser, relay, "Rhys Davies");
  const people = [mediator, adeyemi, bell, chen, davies];
  const m = mediator.page;

  // The mediator starts the mediation: three sides, one link per person.
  await visit(m, relay.url);
  await accessible(mediator, "01-start");
  await createMediation(mediator, relay, "Dr Okafor", [
    ["Dr Adeyemi", ["Funmi Adeyemi", "Mark Bell"]],
    ["Dr Chen", ["Li Chen"]],
    ["Dr Davies", ["Rhys Davies"]],
  ]);
  const links = {};
  for (const p of people.slice(1)) {
    links[p.name] = await inviteLink(mediator, p.name);
    // The secret travels in the fragment, which browsers never send.
    assert.match(links[p.name], new RegExp(`^${relay.url}#caucus:invite:v1:`));
  }

  // Each opens their link; its secret leaves the address bar at once.
  await visit(adeyemi.page, links["Funmi Adeyemi"]);
  assert.equal(new URL(adeyemi.page.url()).hash, "#invitation");
  await accessible(adeyemi, "02-invitation");
  await adeyemi.page.getByRole("button", { name: "Join the mediation" }).click();
  await adeyemi.page.getByText("The mediator is online and has been told you are here.").waitFor();
  await accessible(adeyemi, "03-waiting-room");
  await m.getByRole("region", { name: "Waiting to be let in" }).waitFor();
  await accessible(mediator, "04-mediator-waiting-room");
  await m.getByRole("button", { name: "Let Funmi Adeyemi in" }).click();
  await adeyemi.page.getByRole("heading", { name: "Your private room" }).waitFor();
  for (const p of [bell, chen, davies]) {
    const codes = await joinAndAdmit(mediator, p, links[p.name]);
    assert.match(codes.myCode, /^\d{5}( \d{5}){5}$/);
  }

  // Private words: the two members of one side read each other; nobody else does.
  await say(adeyemi, "I will not stay in a partnership where my list is twice the size of theirs.");
  await bell.page.getByText("I will not stay in a partnership where my list is twice").waitFor();
  await say(chen, "I could take on more patients if the rota changed.", { mayShare: true });
  await accessible(adeyemi, "05-party-private-room");

  // Where the mediator is, as each party sees it.
  await goTo(mediator, "Dr Adeyemi (private)");
  await adeyemi.page.getByText("The mediator is with you").waitFor();
  await chen.page.getByText("The mediator is with another party").waitFor();

  // Carrying a mediator-only message without its author's consent is refused, and says why.
  const said = m.locator(".message", { hasText: "my list is twice the size" });
  const refused = said.getByRole("button", { name: /Cannot share: for the mediator only/ });
  await refused.waitFor();
  assert.equal(await refused.getAttribute("aria-disabled"), "true");
  await refused.click({ force: true });
  assert.equal(await m.getByRole("dialog").count(), 0, "no carry dialog opens without consent");
  await accessible(mediator, "06-mediator-room");

  // The author consents; the mediator carries it word for word, confirming the destination in words.
  await adeyemi.page.getByRole("button", { name: "Let the mediator share this" }).click();
  await said.getByRole("button", { name: "Share…" }).click();
  await m.getByRole("radio", { name: "Dr Chen's private room" }).check();
  await m.getByRole("button", { name: "Continue" }).click();
  const confirm = m.getByRole("dialog", { name: "Share this with Dr Chen's private room?" });
  await confirm.waitFor();
  await accessible(mediator, "07-carry-confirmation");
  await confirm.getByRole("button", { name: "Share with Dr Chen's private room" }).click();
  await chen.page.getByText("I will not stay in a partnership where my list is twice the size of theirs.").waitFor();
  await chen.page.getByText("The mediator brings this from Dr Adeyemi · their words, unchanged").waitFor();
  await adeyemi.page.getByText("Shared with Dr Chen, word for word.").waitFor();
  await bell.page.getByText("Shared with Dr Chen, word for word.").waitFor();

  // Chen's words, which she let be shared, go to Davies reframed; Chen is told how.
  await goTo(mediator, "Dr Chen (private)");
  await m.locator(".message", { hasText: "if the rota changed" }).getByRole("button", { name: "Share…" }).click();
  await m.getByRole("radio", { name: "Dr Davies' private room" }).check();
  await m.getByRole("radio", { name: "Reframed in my words" }).check();
  await m.getByLabel("Your words").fill("There may be room to rebalance the lists if the rota is looked at.");
  await m.getByRole("button", { name: "Continue" }).click();
  await m.getByRole("button", { name: "Share with Dr Davies' private room" }).click();
  await davies.page.getByText("There may be room to rebalance the lists if the rota is looked at.").waitFor();
  await chen.page.getByText("Shared with Dr Davies, reframed as: “There may be room to rebalance the lists").waitFor();
  assert.equal(await davies.page.getByText("if the rota changed").count(), 0, "Davies reads only the reframing");
  await accessible(chen, "08-party-share-receipt");

  // A party asks for the mediator; the mediator sees it at a glance.
  await davies.page.getByLabel("Tell the mediator").selectOption("needs_mediator");
  await m.getByText("Rhys Davies · online · I need the mediator").waitFor();

  // Offers both ways: Davies offers, the mediator carries it, Adeyemi's side counters, it goes back.
  await davies.page.getByText("Make an offer").click();
  await davies.page.getByLabel("Amount (optional)").fill("45,000.00");
  await davies.page.getByLabel("Terms in words").fill("Buy-out of Dr Adeyemi's share");
  await davies.page.getByLabel("Conditions (one per line, optional)").fill("Completion within six months");
  await davies.page.getByRole("button", { name: "Send offer to the mediator" }).click();
  await davies.page.getByText("Your offer is with the mediator.").waitFor();
  await goTo(mediator, "Dr Davies (private)");
  await m.getByRole("button", { name: "Carry this offer…" }).click();
  await m.getByRole("radio", { name: "Dr Adeyemi's private room" }).check();
  await m.getByRole("button", { name: "Continue" }).click();
  await m.getByRole("button", { name: "Carry with Dr Adeyemi's private room" }).click();
  const offer = "Offer: GBP 45000.00; Buy-out of Dr Adeyemi's share (conditions: Completion within six months)";
  await bell.page.getByText(offer).first().waitFor();
  await bell.page.getByRole("button", { name: "Answer with a counter-offer…" }).click();
  await bell.page.getByLabel("Amount (optional)").fill("60000");
  await bell.page.getByLabel("Terms in words").fill("Buy-out, with the lease transferred");
  await bell.page.getByRole("button", { name: "Send counter-offer" }).click();
  await accessible(bell, "09-offers");
  await goTo(mediator, "Dr Adeyemi (private)");
  const counter = "Counter-offer: GBP 60000.00; Buy-out, with the lease transferred";
  await m.locator(".message", { hasText: counter }).getByRole("button", { name: "Carry this offer…" }).click();
  await m.getByRole("radio", { name: "Dr Davies' private room" }).check();
  await m.getByRole("button", { name: "Continue" }).click();
  await m.getByRole("button", { name: "Carry with Dr Davies' private room" }).click();
  await davies.page.getByText(counter).first().waitFor();
  await davies.page.getByRole("list", { name: "Offers log" }).getByText(counter).waitFor();

  // The gates: every side agrees to go on and to meet; the mediator opens the joint room.
  for (const p of [adeyemi, chen, davies]) {
    await p.page.getByRole("button", { name: "We agree to continue with the mediation" }).click();
    await p.page.getByText("Your side has agreed to continue with the mediation.").waitFor();
    await p.page.getByRole("button", { name: "We agree to meet the other side in a joint meeting" }).click();
  }
  await bell.page.getByText("Your side has agreed to meet the other side in the joint room.").waitFor();
  for (const side of ["Dr Adeyemi", "Dr Chen", "Dr Davies"]) {
    await m.getByRole("region", { name: side }).getByText("✓ agreed to a joint meeting").waitFor();
  }
  await m.getByLabel("Stage").selectOption("negotiation");
  await m.getByText("Mediation · Negotiation").waitFor();
  await m.getByRole("button", { name: "Open the joint room" }).click();
  // Chen writes in the joint room with the keyboard only.
  await chen.page.getByRole("button", { name: "Joint room" }).click();
  await chen.page.getByLabel("Write a message").focus();
  await chen.page.keyboard.type("Thank you all for coming together today.");
  await chen.page.keyboard.press("Tab");
  await chen.page.keyboard.press("Enter");
  await chen.page.locator(".message:not(.sending)").getByText("Thank you all for coming together today.").waitFor();
  for (const p of [adeyemi, davies]) {
    await p.page.getByRole("button", { name: "Joint room" }).click();
    await p.page.getByText("Thank you all for coming together today.").waitFor();
  }
  await accessible(davies, "10-joint-room");

  // A side room for the solicitor and Chen: only they (and the mediator) read it; then it closes.
  await m.getByRole("checkbox", { name: "Mark Bell (Dr Adeyemi)" }).check();
  await m.getByRole("checkbox", { name: "Li Chen (Dr Chen)" }).check();
  await m.getByRole("button", { name: "Open side room" }).click();
  await bell.page.getByRole("button", { name: "The side room with Li Chen" }).click();
  await say(bell, "Could we look at the lease on its own?");
  await chen.page.getByRole("button", { name: "The side room with Mark Bell" }).click();
  await chen.page.getByText("Could we look at the lease on its own?").waitFor();
  assert.equal(await adeyemi.page.getByRole("button", { name: /side room/i }).count(), 0, "Adeyemi is not in it");
  // Its members in the order of their devices: either name may come first.
  await goTo(mediator, /The side room with (Mark Bell, Li Chen|Li Chen, Mark Bell)/);
  await m.getByText("Could we look at the lease on its own?").waitFor();
  await m.getByRole("button", { name: "Close this side room" }).click();
  await m.getByRole("dialog").getByRole("button", { name: "Close it" }).click();
  await bell.page.getByRole("button", { name: /side room/i }).waitFor({ state: "detached" });
  await chen.page.getByRole("button", { name: "Joint room" }).click();

  // Davies withdraws, with the keyboard only, after confirming: Escape leaves the dialog
  // with nothing done; he can no longer write, and everyone is told.
  const k = davies.page.keyboard;
  await davies.page.getByRole("button", { name: "Withdraw from the mediation" }).focus();
  await k.press("Enter");
  const dialog = davies.page.getByRole("dialog", { name: "Withdraw your side from the mediation?" });
  await dialog.waitFor();
  await k.press("Escape");
  await dialog.waitFor({ state: "detached" });
  // (The dialog's own words say "your side has withdrawn" too: the notice is the one that starts so.)
  assert.equal(await davies.page.getByText(/^Your side has withdrawn from the mediation\./).count(), 0, "nothing withdrawn");
  assert.equal(await davies.page.getByLabel("Write a message").count(), 1);
  await davies.page.getByRole("button", { name: "Withdraw from the mediation" }).focus();
  await k.press("Enter");
  await dialog.waitFor();
  // The focus starts inside the dialog; Tab reaches its buttons in order.
  for (let i = 0; i < 5 && !(await dialog.getByRole("button", { name: "Withdraw" }).evaluate((b) => b === document.activeElement)); i++) {
    await k.press("Tab");
  }
  await k.press("Enter");
  await davies.page.getByText("Your side has withdrawn from the mediation.").first().waitFor({ timeout: 20_000 });
  assert.equal(await davies.page.getByLabel("Write a message").count(), 0);
  await m.getByRole("region", { name: "Dr Davies" }).getByText("withdrawn").waitFor();
  await adeyemi.page.getByText("A side has withdrawn from the mediation.").waitFor();

  // The agreement: drafted, read with its questions, signed by every remaining member, countersigned.
  await m.getByLabel("Stage").selectOption("agreement");
  await m.getByText("Mediation · Agreement").waitFor();
  await m.getByText("Draft an agreement").click();
  await m.getByLabel("Title", { exact: true }).fill("Dissolution of the Adeyemi–Chen partnership");
  await m.getByLabel("Terms", { exact: true }).fill("1. Dr Adeyemi leaves the partnership on 31 March.\n2. Dr Chen takes on the lease.");
  await m.getByRole("button", { name: "Propose for signature" }).click();
  for (const p of [adeyemi, bell, chen]) {
    await p.page.getByText("Is this workable in practice?").waitFor();
    await p.page.getByRole("button", { name: "Sign the agreement" }).click();
    await p.page.getByRole("dialog", { name: "Sign this agreement?" }).getByRole("button", { name: "Sign" }).click();
  }
  await accessible(chen, "11-agreement-to-sign");
  // Countersigning waits for everyone; then every member gets the copy.
  await m.getByText("Li Chen: signed").waitFor();
  await m.getByText("Mark Bell: signed").waitFor();
  await m.getByRole("button", { name: "Countersign and give everyone their copy" }).click();
  const copies = {};
  for (const p of [adeyemi, bell, chen]) {
    await p.page.getByRole("button", { name: "Download the signed agreement" }).waitFor();
    const [download] = await Promise.all([
      p.page.waitForEvent("download"),
      p.page.getByRole("button", { name: "Download the signed agreement" }).click(),
    ]);
    copies[p.name] = readFileSync(await download.path(), "utf8");
  }
  await accessible(adeyemi, "12-agreement-signed");
  assert.equal(copies["Li Chen"], copies["Mark Bell"]);
  assert.match(copies["Li Chen"], /Dr Adeyemi leaves the partnership on 31 March/);

  // The verify page checks a copy with nothing else; a changed copy fails.
  const file = path.join(os.tmpdir(), `agreement-${process.pid}.md`);
  writeFileSync(file, copies["Funmi Adeyemi"]);
  await visit(adeyemi.page, `${relay.url}#verify`);
  await adeyemi.page.getByLabel("Agreement file").setInputFiles(file);
  await adeyemi.page.getByText("Genuine.").waitFor();
  await accessible(adeyemi, "13-verify");
  await adeyemi.page.getByLabel("Or paste it here").fill(copies["Funmi Adeyemi"].replace("31 March", "31 May"));
  await adeyemi.page.getByRole("button", { name: "Check", exact: true }).click();
  await adeyemi.page.getByText("Not genuine, or not an agreement.").waitFor();

  // The mediator closes; the relay's signed statement; every device erases its copy and keeps the agreement.
  await m.getByRole("button", { name: "Close the session" }).click();
  await m.getByRole("dialog", { name: "Close this mediation for everyone?" }).getByRole("button", { name: "Close the session" }).click();
  await m.getByRole("heading", { name: "The relay's signed statement" }).waitFor({ timeout: 20_000 });
  await m.getByText(/the relay erased everything it held of this mediation/).waitFor();
  await accessible(mediator, "14-closed-statement");
  for (const p of [bell, chen, davies]) {
    await p.page.getByRole("heading", { name: "This mediation has ended" }).waitFor({ timeout: 20_000 });
  }
  await chen.page.reload();
  await chen.page.waitForSelector("#app[data-ready=true]");
  await chen.page.getByRole("heading", { name: "This mediation has ended" }).waitFor();
  await chen.page.getByRole("button", { name: "Download the signed agreement" }).waitFor();
  const held = await chen.page.evaluate(async () => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open("caucus");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const count = (store) =>
      new Promise((resolve) => {
        const r = db.transaction(store).objectStore(store).count();
        r.onsuccess = () => resolve(r.result);
      });
    return { snapshots: await count("snapshots"), log: await count("log"), kept: await count("kept") };
  });
  assert.deepEqual(held, { snapshots: 0, log: 0, kept: 1 }, "the conversation is erased, the agreement kept");

  assert.deepEqual(people.flatMap((p) => p.errors), []);
});

test("a second tab of the same browser does not run the device twice", { timeout: 120_000 }, async () => {
  const someone = await person(browser, relay, "Someone", LAPTOP);
  await visit(someone.page, relay.url);
  const second = await someone.context.newPage();
  await second.goto(relay.url);
  await second.getByText("Caucus is already open in another tab or window of this browser.").waitFor();
  // Once the first tab is gone, the device opens in the other.
  await someone.page.close();
  await second.reload();
  await second.waitForSelector("#app[data-ready=true]");
  await second.getByRole("heading", { name: "Caucus" }).waitFor();
  assert.deepEqual(someone.errors, []);
});

test("a co-mediator joins from an invitation, reads each room and carries, without the lead's controls", { timeout: 180_000 }, async () => {
  const lead = await person(browser, relay, "Ms Lead", LAPTOP);
  const co = await person(browser, relay, "Mr Co", LAPTOP);
  const claimant = await person(browser, relay, "Ms Claimant");
  const respondent = await person(browser, relay, "Mr Respondent");
  await createMediation(lead, relay, "Ms Lead", [
    ["Claimant", ["Ms Claimant"]],
    ["Respondent", ["Mr Respondent"]],
  ]);
  const m = lead.page;
  await m.getByLabel("Invite someone").fill("Mr Co");
  await m.getByLabel("to", { exact: true }).selectOption({ label: "join me as co-mediator" });
  await m.getByRole("button", { name: "Make a link" }).click();
  await m.getByText("Mr Co (co-mediator) — not used yet").waitFor();
  for (const p of [claimant, respondent]) await joinAndAdmit(lead, p, await inviteLink(lead, p.name));
  await visit(co.page, await inviteLink(lead, "Mr Co"));
  await co.page.getByRole("button", { name: "Join the mediation" }).click();
  await m.getByRole("button", { name: "Let Mr Co in" }).click();
  await co.page.getByText("You are Mr Co, co-mediator.").waitFor({ timeout: 20_000 });
  // The lead's own controls are not the co-mediator's.
  for (const lead_only of ["Invitations", "The process", "End the mediation"]) {
    assert.equal(await co.page.getByRole("heading", { name: lead_only }).count(), 0, lead_only);
  }
  await say(claimant, "Said to both mediators.", { mayShare: true });
  await goTo(co, "Claimant (private)");
  await co.page.getByText("Said to both mediators.").waitFor();
  await co.page.locator(".message", { hasText: "Said to both mediators." }).getByRole("button", { name: "Share…" }).click();
  await co.page.getByRole("radio", { name: "Respondent's private room" }).check();
  await co.page.getByRole("button", { name: "Continue" }).click();
  await co.page.getByRole("button", { name: "Share with Respondent's private room" }).click();
  await respondent.page.getByText("Said to both mediators.").waitFor();
  await claimant.page.getByText("Shared with Respondent, word for word.").waitFor();
  assert.deepEqual([lead, co, claimant, respondent].flatMap((p) => p.errors), []);
});
