// What the relay and the browsers keep, read byte by byte after a real
// mediation in browsers:
//
// (a) an invitation's secret never reaches the relay: neither its log (at
//     debug level) nor any file of its data directory holds it — raw, as
//     hex, or in base64 or base64url at any alignment — nor the link, and no
//     page sends it over its websocket;
// (b) what a party writes, and the terms of her offer, reach the mediator's
//     screen but are in no file of the relay, in no line of its log, and in
//     no frame any page sent;
// (c) each browser's IndexedDB holds nothing of them in the clear (every
//     stored key and value walked), and the key that seals it is a
//     non-extractable AES-GCM 256 key;
// (d) the relay serves the page with a Content-Security-Policy whose
//     `connect-src` is 'self' only and that allows no inline script, and
//     index.html has none; the browser enforces it.
//
// Each search is shown able to find what it looks for: the envelopes the
// pages posted are in the data directory as sent, the session's id is in
// the log, the words are on the mediator's screen, the frames hold posts,
// and the databases hold sealed records.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  LAPTOP,
  createMediation,
  filesUnder,
  foundIn,
  goTo,
  inviteLink,
  joinAndAdmit,
  launch,
  machineProblems,
  person,
  say,
  startRelay,
  watchMachine,
  rawDatabase,
} from "./support.mjs";

const PREFIX = "caucus:invite:v1:";

let relay, browser, people, mediator, alice, bob;
/** The session's id, as the mediator's address shows it; Alice's invitation: its web link and what it holds. */
let session, link, invite;
/** Unique words nobody but the people meant to read them may hold in the clear. */
const canary = {
  words: `canary-words-${randomBytes(12).toString("hex")}`,
  offer: `canary-offer-${randomBytes(12).toString("hex")}`,
  condition: `canary-condition-${randomBytes(12).toString("hex")}`,
  reply: `canary-reply-${randomBytes(12).toString("hex")}`,
};
/** Every response of the relay to a page, as the browser got it: url, status, headers. */
const responses = [];

/**
 * The canonical `Invite` of an invitation link (docs/protocol.md 11.1):
 * `str` relay (u32 length, UTF-8), relay key 32, session 16, id 16, secret 32, mediator
 * 32, `u64` expires_at — nothing before, nothing after.
 */
function decodeInvite(webLink) {
  const fragment = decodeURIComponent(new URL(webLink).hash.slice(1));
  assert.ok(fragment.startsWith(PREFIX), `the fragment is an invite link: ${fragment.slice(0, 20)}`);
  const payload = fragment.slice(PREFIX.length);
  assert.match(payload, /^[A-Za-z0-9_-]+$/, "unpadded base64url");
  const bytes = Buffer.from(payload, "base64url");
  assert.equal(bytes.toString("base64url"), payload, "canonical base64url");
  const n = bytes.readUInt32BE(0);
  let at = 4;
  const take = (len) => bytes.subarray(at, (at += len));
  const out = {
    fragment,
    payload,
    relay: take(n).toString("utf8"),
    relayKey: take(32),
    session: take(16),
    id: take(16),
    secret: take(32),
    mediator: take(32),
    expiresAt: bytes.readBigUInt64BE(at),
  };
  at += 8;
  assert.equal(at, bytes.length, "nothing after expires_at");
  return out;
}

/** Everything the relay keeps and says: its data directory, file by file, and its log. */
function relayKeeps() {
  return [...filesUnder(relay.dataDir), { name: "the relay's log", bytes: Buffer.from(relay.log.join(""), "utf8") }];
}

/** Every frame each page sent over its websocket. */
function framesSent() {
  return people.flatMap((p) => p.frames.map((f, i) => ({ name: `${p.name}'s frame ${i}`, bytes: Buffer.from(f, "utf8") })));
}

before(async () => {
  relay = await startRelay();
  browser = await launch();
  mediator = await person(browser, relay, "Ms Mediator", LAPTOP);
  alice = await person(browser, relay, "Alice Archer");
  bob = await person(browser, relay, "Bob Baker");
  people = [mediator, alice, bob];
  for (const p of people) {
    await watchMachine(p);
    p.page.on("response", (r) => {
      if (r.url().startsWith(relay.url)) responses.push(r.allHeaders().then((headers) => ({ url: r.url(), status: r.status(), headers })));
    });
  }

  await createMediation(mediator, relay, "Ms Mediator", [
    ["Claimant", ["Alice Archer"]],
    ["Respondent", ["Bob Baker"]],
  ]);
  session = decodeURIComponent(new URL(mediator.page.url()).hash).replace(/^#session=/, "");
  link = await inviteLink(mediator, "Alice Archer");
  invite = decodeInvite(link);
  await joinAndAdmit(mediator, alice, link);
  await joinAndAdmit(mediator, bob, await inviteLink(mediator, "Bob Baker"));

  // Alice's words, for the mediator only; her offer; the mediator's answer.
  await say(alice, `What I will not say to them: ${canary.words}`);
  await alice.page.getByText("Make an offer").click();
  await alice.page.getByLabel("Amount (optional)").fill("12,345.67");
  await alice.page.getByLabel("Terms in words").fill(`Terms: ${canary.offer}`);
  await alice.page.getByLabel("Conditions (one per line, optional)").fill(canary.condition);
  await alice.page.getByRole("button", { name: "Send offer to the mediator" }).click();
  await alice.page.getByText("Your offer is with the mediator.").waitFor();
  await goTo(mediator, "Claimant (private)");
  await mediator.page.getByText(`What I will not say to them: ${canary.words}`).waitFor();
  await mediator.page.getByText(`Offer: GBP 12345.67; Terms: ${canary.offer} (conditions: ${canary.condition})`).first().waitFor();
  await say(mediator, `Understood: ${canary.reply}`);
  await alice.page.getByText(`Understood: ${canary.reply}`).waitFor();
  await say(bob, "Nothing secret from me.");
  await goTo(mediator, "Respondent (private)");
  await mediator.page.getByText("Nothing secret from me.").waitFor();
});

after(async () => {
  await browser?.close();
  await relay?.stop();
  relay?.remove();
});

test("(a) the invitation's secret is in neither the relay's log nor its data directory, nor in any frame sent", { timeout: 60_000 }, async () => {
  // The link holds what protocol.md 11.1 says it does.
  assert.match(link, new RegExp(`^${relay.url}#caucus:invite:v1:`));
  assert.equal(invite.relay, relay.ws);
  assert.ok(invite.expiresAt * 1000n > BigInt(Date.now()), "it expires in the future");
  assert.equal(invite.session.toString("base64url"), session, "the session it names is the one on the mediator's screen");
  assert.equal(new Set(invite.secret).size > 8, true, "the secret is random bytes");

  const kept = relayKeeps();
  // The searches can find things: the relay logs the session's id, and keeps every envelope as it was posted.
  assert.deepEqual(foundIn(kept, Buffer.from(session, "utf8")).includes("the relay's log"), true, "the session's id is in the log");
  const posts = framesSent().map((f) => JSON.parse(f.bytes)).filter((f) => f.type === "post");
  assert.ok(posts.length >= 4, "the pages posted");
  for (const post of posts) {
    assert.ok(
      filesUnder(relay.dataDir).some((f) => f.bytes.includes(Buffer.from(post.envelope, "base64url"))),
      "the data directory holds each envelope, byte for byte",
    );
  }

  // …and find the secret in the link, where it is base64url at an offset.
  assert.deepEqual(foundIn([{ name: "the link", bytes: Buffer.from(link, "utf8") }], invite.secret), ["the link"]);

  assert.deepEqual(foundIn(kept, invite.secret), [], "the secret is kept nowhere by the relay");
  assert.deepEqual(foundIn(framesSent(), invite.secret), [], "no page sent the secret");
  for (const text of [link, invite.fragment, invite.payload]) {
    assert.deepEqual(foundIn(kept, Buffer.from(text, "utf8")), [], "nor the link");
    assert.deepEqual(foundIn(framesSent(), Buffer.from(text, "utf8")), [], "no page sent the link");
  }
  // The invitee's page took the secret out of the address bar.
  assert.ok(!alice.page.url().includes(PREFIX));
});

test("(b) what a party wrote and offered is on the mediator's screen, and nowhere at the relay nor in any frame sent", { timeout: 60_000 }, async () => {
  const kept = relayKeeps();
  const frames = framesSent();
  assert.ok(frames.some((f) => f.name.startsWith("Alice Archer") && JSON.parse(f.bytes).type === "post"), "Alice's page posted");
  assert.ok(frames.some((f) => f.name.startsWith("Ms Mediator") && JSON.parse(f.bytes).type === "post"), "the mediator's page posted");
  await goTo(mediator, "Claimant (private)");
  await mediator.page.getByText(canary.condition, { exact: false }).first().waitFor();
  const screen = [{ name: "the mediator's screen", bytes: Buffer.from(await mediator.page.content(), "utf8") }];
  for (const [what, words] of Object.entries(canary)) {
    const bytes = Buffer.from(words, "utf8");
    assert.deepEqual(foundIn(screen, bytes), ["the mediator's screen"], `the ${what} canary reached the mediator`);
    assert.deepEqual(foundIn(kept, bytes), [], `the ${what} canary is kept nowhere by the relay`);
    assert.deepEqual(foundIn(frames, bytes), [], `no page sent the ${what} canary in the clear`);
  }
  const problems = [];
  for (const p of people) problems.push(...(await machineProblems(p)));
  assert.deepEqual(problems, []);
  assert.deepEqual(people.flatMap((p) => p.errors), []);
});

test("(c) each browser's IndexedDB holds nothing in the clear, sealed under a non-extractable AES-GCM 256 key", { timeout: 60_000 }, async () => {
  for (const p of people) {
    const raw = await rawDatabase(p.page, "caucus");
    assert.deepEqual(
      raw.keys,
      [{ extractable: false, algorithm: "AES-GCM", length: 256, usages: ["encrypt", "decrypt"] }],
      `${p.name}: one state key, AES-GCM 256, not extractable`,
    );
    assert.deepEqual(raw.exported, ["raw: InvalidAccessError", "jwk: InvalidAccessError"], `${p.name}: Web Crypto refuses to export it`);
    assert.equal(raw.counts.identity, 1, `${p.name}: the device`);
    assert.equal(raw.counts.snapshots, 1, `${p.name}: the session`);
    assert.ok(raw.counts.log >= 1, `${p.name}: its log`);
    const stored = [{ name: `${p.name}'s IndexedDB`, bytes: Buffer.concat(raw.bytes.map((b) => Buffer.from(b))) }];
    assert.ok(stored[0].bytes.length > 1000, `${p.name}: sealed records are stored`);
    assert.deepEqual(foundIn(stored, Buffer.from(session, "utf8")), [`${p.name}'s IndexedDB`], `${p.name}: the walk reads keys (the session's id names its snapshot)`);
    for (const [what, words] of Object.entries(canary)) {
      assert.deepEqual(foundIn(stored, Buffer.from(words, "utf8")), [], `${p.name}: the ${what} canary is not stored in the clear`);
    }
    assert.deepEqual(foundIn(stored, invite.secret), [], `${p.name}: nor the invitation's secret`);
    assert.deepEqual(foundIn(stored, Buffer.from(invite.payload, "utf8")), [], `${p.name}: nor the link`);
  }
});

test("(d) the page is served with a Content-Security-Policy that allows connecting to its own origin only and no inline script", { timeout: 60_000 }, async () => {
  const policyOf = (header) =>
    Object.fromEntries(
      header
        .split(";")
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0] !== "")
        .map(([name, ...values]) => [name, values]),
    );
  const checkPolicy = (header, what) => {
    assert.ok(header, `${what} carries a Content-Security-Policy`);
    const policy = policyOf(header);
    assert.deepEqual(policy["connect-src"], ["'self'"], `${what}: connect-src 'self' only`);
    assert.deepEqual(policy["default-src"], ["'none'"], `${what}: nothing else by default`);
    const scripts = policy["script-src"] ?? policy["default-src"];
    for (const unsafe of ["'unsafe-inline'", "'unsafe-eval'", "*", "data:", "blob:"]) {
      assert.ok(!scripts.includes(unsafe), `${what}: script-src allows no ${unsafe}`);
    }
    assert.ok(!scripts.some((s) => s.startsWith("'nonce-") || s.startsWith("'sha")), `${what}: no inline script let in by nonce or hash`);
  };

  const page = await fetch(relay.url);
  assert.equal(page.status, 200);
  checkPolicy(page.headers.get("content-security-policy"), "index.html");
  const html = await page.text();
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)];
  assert.ok(scripts.length >= 1, "index.html loads its script");
  for (const [, attributes, body] of scripts) {
    assert.match(attributes, /\bsrc="(?![a-z][a-z0-9+.-]*:|\/\/)[^"]+"/i, "every script is loaded from the relay (a path, no other origin)");
    assert.equal(body.trim(), "", "no script inline");
  }
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, "no inline event handler");
  assert.doesNotMatch(html, /=\s*["']?\s*javascript:/i, "no javascript: URL");
  // Whatever index.html loads comes with the same policy.
  const assets = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
  for (const asset of assets) assert.doesNotMatch(asset, /^([a-z][a-z0-9+.-]*:|\/\/)/i, `${asset} is of the relay's own origin`);
  assert.ok(assets.length >= 2, `index.html loads its script and styles: ${assets}`);
  for (const asset of assets) {
    const r = await fetch(new URL(asset, relay.url));
    assert.equal(r.status, 200, asset);
    checkPolicy(r.headers.get("content-security-policy"), asset);
    await r.arrayBuffer();
  }
  // So did every response the browsers got from the relay in the mediation.
  const got = await Promise.all(responses);
  assert.ok(got.some((r) => r.url.endsWith(".wasm")), "the pages loaded the client machine");
  for (const r of got) checkPolicy(r.headers["content-security-policy"], `${r.url} (${r.status})`);

  // And the browser enforces it: an inline script and a connection elsewhere are refused.
  const visitor = await person(browser, relay, "A visitor");
  try {
    await visitor.page.goto(relay.url);
    await visitor.page.waitForSelector("#app[data-ready=true]", { timeout: 30_000 });
    const refused = await visitor.page.evaluate(async () => {
      const violations = [];
      document.addEventListener("securitypolicyviolation", (e) => violations.push(e.effectiveDirective));
      const script = document.createElement("script");
      script.textContent = "window.inlineRan = true;";
      document.head.append(script);
      try {
        new WebSocket("ws://127.0.0.2:9/");
      } catch {
        violations.push("connect-src (thrown)");
      }
      // Reported as events, once the browser has refused both.
      for (let i = 0; i < 100 && !(violations.some((v) => v.startsWith("script-src")) && violations.some((v) => v.startsWith("connect-src"))); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      return { inlineRan: window.inlineRan === true, violations };
    });
    assert.equal(refused.inlineRan, false, "an inline script does not run");
    assert.ok(refused.violations.some((v) => v.startsWith("script-src")), `the inline script was refused: ${refused.violations}`);
    assert.ok(refused.violations.some((v) => v.startsWith("connect-src")), `the connection elsewhere was refused: ${refused.violations}`);
  } finally {
    await visitor.context.close();
  }
});
