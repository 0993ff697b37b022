// What the web client keeps in the browser, and how: the client machine
// compiled to WebAssembly, its driver (app/driver.ts) and its IndexedDB
// store (app/store.ts), in Debian's Chromium driven by Playwright, against a
// real relay on a loopback port. Proves, as docs/security.md cites them:
//
// - a mediator and a claimant (two browser contexts) exchange a message end
//   to end encrypted: nothing the claimant's page sends over its websocket
//   holds her words in the clear;
// - "a reloaded page keeps its device, its session and what was said,
//   sealed in IndexedDB under a non-extractable key": the same device, its
//   session and history after a reload, signed in without joining again; no
//   frame leaves while a save is under way; the database holds neither a
//   message nor 16 bytes of the device key in the clear, and its one
//   CryptoKey is AES-GCM 256, not extractable;
// - "a stored value put in another's place, altered, or cut from a log does
//   not open": a log record swapped with another, a snapshot in another
//   session's place, a byte of the device key altered, a record cut from a
//   log — `Store.load()` refuses each, saying which.
//
// These drive `Device`, `Driver` and `Store` directly, below the screens
// (mediation.test.mjs goes through those). The shipped bundle exposes nothing
// on `window`, so a harness page (tests/harness/: index.html, entry.ts, which
// puts them on `window.caucus`) is bundled here with esbuild at test time,
// never shipped, and the relay serves it with `--web-dir`: the page runs on
// the relay's origin, under the relay's own content security policy (no
// inline script; `connect-src 'self'` lets it open the relay's websocket).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as esbuild from "esbuild";
import { launch, rawDatabase, startRelay, web } from "./support.mjs";

const pkg = path.join(web, "pkg");
const WASM = "caucus_web_bg.wasm";

let relay, relayUrl, pageUrl, site, browser;

before(async () => {
  // The client machine's bindings (web/pkg) are made by build.mjs, which
  // `npm test` runs first (`--check`); run alone, this builds them.
  if (!existsSync(path.join(pkg, "caucus_web.js")) || !existsSync(path.join(pkg, WASM))) {
    execFileSync(process.execPath, [path.join(web, "build.mjs"), "--check"], { cwd: web, stdio: "inherit" });
  }
  site = mkdtempSync(path.join(os.tmpdir(), "caucus-harness-"));
  await esbuild.build({
    absWorkingDir: web,
    entryPoints: { entry: "tests/harness/entry.ts" },
    bundle: true,
    format: "esm",
    target: "es2022",
    jsx: "automatic",
    jsxImportSource: "preact",
    define: { WASM_URL: JSON.stringify(WASM) },
    outdir: site,
    logLevel: "warning",
  });
  copyFileSync(path.join(pkg, WASM), path.join(site, WASM));
  copyFileSync(path.join(web, "tests/harness/index.html"), path.join(site, "index.html"));

  relay = await startRelay({ args: ["--web-dir", site] });
  relayUrl = relay.ws;
  pageUrl = relay.url;
  browser = await launch();
}, { timeout: 900_000 });

after(async () => {
  await browser?.close();
  await relay?.stop();
  relay?.remove();
  if (site) rmSync(site, { recursive: true, force: true });
});

async function openPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(pageUrl);
  await ready(page);
  return { page, errors };
}

function ready(page) {
  return page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
}

/** A mediator's page with a new session, and an invite for its claimant. */
async function mediatorWithInvite() {
  const mediator = await openPage();
  const { session, link } = await mediator.page.evaluate(async (relay) => {
    const d = await window.caucus.Driver.open(relay);
    window.driver = d;
    const created = await d.run((dev, now) =>
      dev.createSession("Ms Mediator", ["Claimant", "Defendant trust"], now),
    );
    const invite = await d.run((dev, now) =>
      dev.invite(created.session, "claimant", "Ms Claimant", 1, true, now),
    );
    return { session: created.session, link: invite.link };
  }, relayUrl);
  assert.match(link, /^caucus:invite:v1:/);
  return { mediator, session, link };
}

/** `page`'s `window.driver` sends `words` to the claimant's room; the message's hash. */
async function mediatorSays(page, session, words) {
  const sent = await page.evaluate(
    ({ session, words }) =>
      window.driver.run((dev, now) => dev.sendText(session, "claimant", words, false, now)),
    { session, words },
  );
  return sent.message;
}

/** The page's `window.driver` has (or gets) the message `hash`. */
function heard(page, hash) {
  return page.evaluate(
    (hash) => window.driver.event((e) => e.type === "message" && e.hash === hash),
    hash,
  );
}

test("a mediator and a claimant in two browsers exchange a message end to end encrypted", { timeout: 120_000 }, async () => {
  const { mediator, session, link } = await mediatorWithInvite();
  const claimant = await openPage();
  const claimantFrames = [];
  claimant.page.on("websocket", (ws) => ws.on("framesent", (f) => claimantFrames.push(String(f.payload))));

  const words = "Our bottom line is two hundred thousand";
  const sent = await claimant.page.evaluate(
    async ({ relay, link, session, words }) => {
      const d = await window.caucus.Driver.open(relay);
      d.now((dev, now) => dev.join(link, now));
      await d.event((e) => e.type === "joined" && e.session === session);
      return d.run((dev, now) => dev.sendText(session, "mine", words, false, now));
    },
    { relay: relayUrl, link, session, words },
  );
  assert.equal(sent.index, 1);

  const message = await heard(mediator.page, sent.message);
  assert.equal(message.text, words);
  assert.equal(message.sharing, "mediator_only");

  assert.ok(claimantFrames.some((f) => f.includes('"type":"post"')), "the claimant's page posted");
  assert.ok(!claimantFrames.some((f) => f.includes("bottom line")), "her words left the page only encrypted");
  assert.deepEqual([...mediator.errors, ...claimant.errors], []);
});

test("a reloaded page keeps its device, its session and what was said, sealed in IndexedDB under a non-extractable key", { timeout: 120_000 }, async () => {
  const { mediator, session, link } = await mediatorWithInvite();
  const claimant = await openPage();

  // The claimant joins. A copy of the secret keys her new device hands out
  // to be stored is kept, to look for them in the database. Each save is
  // made slower, and every frame sent while one is under way is noted: a
  // frame must wait for the save before it.
  const before = await claimant.page.evaluate(
    async ({ relay, link, session }) => {
      const { Device, Driver, Store } = window.caucus;
      const take = Device.prototype.takeChanges;
      let identity;
      Device.prototype.takeChanges = function () {
        const changes = take.call(this);
        if (changes?.identity !== undefined) identity = Array.from(changes.identity);
        return changes;
      };
      const save = Store.prototype.save;
      window.saving = 0;
      window.saves = 0;
      Store.prototype.save = async function (changes) {
        window.saving += 1;
        try {
          await new Promise((r) => setTimeout(r, 30));
          await save.call(this, changes);
          window.saves += 1;
        } finally {
          window.saving -= 1;
        }
      };
      const send = WebSocket.prototype.send;
      window.sent = 0;
      window.sentWhileSaving = [];
      WebSocket.prototype.send = function (frame) {
        window.sent += 1;
        if (window.saving > 0) window.sentWhileSaving.push(frame);
        return send.call(this, frame);
      };
      const d = await Driver.open(relay);
      window.driver = d;
      d.now((dev, now) => dev.join(link, now));
      await d.event((e) => e.type === "joined" && e.session === session);
      return { fingerprint: d.device.fingerprint, identity };
    },
    { relay: relayUrl, link, session },
  );
  assert.ok(before.identity.length > 32, "the new device handed out its keys");

  const first = "The boundary wall was rebuilt in nineteen eighty-seven";
  assert.equal((await heard(claimant.page, await mediatorSays(mediator.page, session, first))).text, first);
  const order = await claimant.page.evaluate(() => ({
    saves: window.saves,
    sent: window.sent,
    sentWhileSaving: window.sentWhileSaving,
  }));
  assert.ok(order.saves >= 3 && order.sent >= 3, `saves and frames both happened: ${JSON.stringify(order)}`);
  assert.deepEqual(order.sentWhileSaving, [], "no frame left while a save was under way");

  // Reloaded: the same browser context, so the same IndexedDB.
  await claimant.page.reload();
  await ready(claimant.page);
  const framesAfter = [];
  claimant.page.on("websocket", (ws) => ws.on("framesent", (f) => framesAfter.push(String(f.payload))));
  const after = await claimant.page.evaluate(
    async ({ relay, session }) => {
      const d = await window.caucus.Driver.open(relay);
      window.driver = d;
      return {
        fingerprint: d.device.fingerprint,
        sessions: d.device.sessions,
        history: JSON.parse(d.device.history(session)),
      };
    },
    { relay: relayUrl, session },
  );
  assert.equal(after.fingerprint, before.fingerprint, "the same device");
  assert.deepEqual(after.sessions, [session], "it still holds the session");
  assert.ok(
    after.history.some((e) => e.type === "message" && e.text === first),
    "and what was said before the reload",
  );

  const second = "A survey of the boundary is acceptable to my client";
  assert.equal((await heard(claimant.page, await mediatorSays(mediator.page, session, second))).text, second);
  assert.ok(framesAfter.some((f) => f.includes('"type":"auth"')), "the reloaded page signed in");
  assert.ok(!framesAfter.some((f) => f.includes('"type":"join"')), "without joining again");

  const raw = await rawDatabase(claimant.page, "caucus");
  assert.deepEqual(raw.keys, [{ extractable: false, algorithm: "AES-GCM", length: 256, usages: ["encrypt", "decrypt"] }]);
  assert.equal(raw.counts.identity, 1);
  assert.equal(raw.counts.snapshots, 1);
  assert.ok(raw.counts.log >= 2, "both messages are in the log");
  const stored = Buffer.concat(raw.bytes.map((b) => Buffer.from(b)));
  for (const words of [first, second]) {
    assert.ok(!stored.includes(Buffer.from(words)), `"${words}" is not stored in the clear`);
  }
  const identity = Buffer.from(before.identity);
  for (let at = 0; at + 16 <= identity.length; at++) {
    assert.ok(!stored.includes(identity.subarray(at, at + 16)), `no 16 bytes of the device key from byte ${at} are stored in the clear`);
  }
  assert.deepEqual([...mediator.errors, ...claimant.errors], []);
});

test("a stored value put in another's place, altered, or cut from a log does not open", { timeout: 60_000 }, async () => {
  const { page, errors } = await openPage();
  const outcomes = await page.evaluate(async () => {
    const { Store } = window.caucus;
    const bytes = (text) => new TextEncoder().encode(text);
    const result = (request) =>
      new Promise((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    const text = (b) => new TextDecoder().decode(b);
    const cases = {
      // Each takes a readwrite transaction on the database as saved.
      untouched: (tx) => tx.abort(),
      "log records swapped": async (tx) => {
        const log = tx.objectStore("log");
        const [a0, a1] = await Promise.all([result(log.get(["A", 0])), result(log.get(["A", 1]))]);
        log.put(a1, ["A", 0]);
        log.put(a0, ["A", 1]);
      },
      "one session's snapshot in another's place": async (tx) => {
        const snapshots = tx.objectStore("snapshots");
        snapshots.put(await result(snapshots.get("B")), "A");
      },
      "the last log record removed": (tx) => tx.objectStore("log").delete(["A", 2]),
      "the last log record removed, the snapshot's count lowered": async (tx) => {
        tx.objectStore("log").delete(["A", 2]);
        const snapshot = await result(tx.objectStore("snapshots").get("A"));
        tx.objectStore("snapshots").put({ ...snapshot, records: 2 }, "A");
      },
      "the first log record removed": (tx) => tx.objectStore("log").delete(["A", 0]),
      "a byte of the device key flipped": async (tx) => {
        const identity = tx.objectStore("identity");
        const sealed = await result(identity.get("device"));
        sealed[20] ^= 1;
        identity.put(sealed, "device");
      },
    };
    const outcomes = {};
    for (const [name, tamper] of Object.entries(cases)) {
      const store = await Store.open(name);
      const changes = {
        identity: bytes("device key"),
        sessions: [
          { session: "A", erase: false, appended: [bytes("a0"), bytes("a1")], snapshot: bytes("A's snapshot"), kept: [] },
          { session: "B", erase: false, appended: [bytes("b0")], snapshot: bytes("B's snapshot"), kept: [] },
        ],
      };
      await store.save(changes);
      const record = bytes("a2");
      await store.save({
        sessions: [{ session: "A", erase: false, appended: [record], snapshot: bytes("A's snapshot, again"), kept: [] }],
      });
      const wiped = changes.identity.every((b) => b === 0) && record.every((b) => b === 0);
      store.db.close();
      const db = await result(indexedDB.open(name));
      const tx = db.transaction(["identity", "snapshots", "log"], "readwrite");
      const ended = new Promise((resolve) => {
        tx.oncomplete = resolve;
        tx.onabort = resolve;
      });
      await tamper(tx);
      await ended;
      db.close();
      try {
        const saved = await (await Store.open(name)).load();
        outcomes[name] = {
          wiped,
          identity: text(saved.identity),
          sessions: saved.sessions.map((s) => [s.session, text(s.snapshot), ...s.log.map(text)]),
        };
      } catch (e) {
        outcomes[name] = e.message;
      }
    }
    return outcomes;
  });
  assert.deepEqual(outcomes, {
    untouched: {
      wiped: true,
      identity: "device key",
      sessions: [["A", "A's snapshot, again", "a0", "a1", "a2"], ["B", "B's snapshot", "b0"]],
    },
    "log records swapped": "record 0 of the log of session A does not open: it was altered, or is another's",
    "one session's snapshot in another's place": "the snapshot of session A does not open: it was altered, or is another's",
    "the last log record removed": "the log of session A has fewer records than its snapshot counts: some were removed",
    "the last log record removed, the snapshot's count lowered": "the snapshot of session A does not open: it was altered, or is another's",
    "the first log record removed": "the log of session A is missing record 0",
    "a byte of the device key flipped": "the device key does not open: it was altered, or is another's",
  });
  assert.deepEqual(errors, []);
});

// The driver keeps each session's record (what the screens show) from the
// machine's history, then from its events. Started from the history in the
// middle of a pass, the record would hold what the machine has not yet
// handed out (nor saved), and then that again from its events: the driver
// starts records only when the machine has handed everything out.
test("a session's record read while a save is under way holds a message once, and only once it is saved", {
  timeout: 120_000,
}, async () => {
  const { mediator, session, link } = await mediatorWithInvite();
  const claimant = await openPage();
  await claimant.page.evaluate(
    async ({ relay, link, session }) => {
      const d = await window.caucus.Driver.open(relay);
      d.now((dev, now) => dev.join(link, now));
      await d.event((e) => e.type === "joined" && e.session === session);
    },
    { relay: relayUrl, link, session },
  );
  // Reloaded, so that a new driver has read no session's record yet. Once
  // it has caught up, every save waits for `window.release()`.
  await claimant.page.reload();
  await ready(claimant.page);
  await claimant.page.evaluate(async (relay) => {
    const { Driver, Store } = window.caucus;
    const save = Store.prototype.save;
    Store.prototype.save = async function (changes) {
      await window.held;
      return save.call(this, changes);
    };
    window.driver = await Driver.open(relay);
    for (let i = 0; i < 200 && !window.driver.device.caughtUp; i++) await new Promise((r) => setTimeout(r, 50));
    window.held = new Promise((r) => (window.release = r));
  }, relayUrl);
  const words = "The hedge belongs to number twelve";
  await mediatorSays(mediator.page, session, words);
  const counts = await claimant.page.evaluate(
    async ({ session, words }) => {
      const d = window.driver;
      const count = (events) => events.filter((e) => e.type === "message" && e.text === words).length;
      // The machine has the message; its save waits.
      for (let i = 0; i < 200 && count(JSON.parse(d.device.history(session))) === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const during = count(d.events(session));
      // The pass under way ends (its listeners called) once its saves are done.
      const passed = new Promise((resolve) => {
        const stop = d.subscribe(() => {
          stop();
          resolve();
        });
      });
      window.release();
      await passed;
      return { during, after: count(d.events(session)) };
    },
    { session, words },
  );
  assert.deepEqual(counts, { during: 0, after: 1 });
  assert.deepEqual([...mediator.errors, ...claimant.errors], []);
});
