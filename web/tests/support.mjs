// What the browser tests share: a real relay (the debug build of
// caucus-server, which serves the web client it embeds) on a loopback port,
// Debian's Chromium driven by Playwright, and the steps people take in the
// web client, found as people find them: by role, label and text.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const web = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
export const root = path.join(web, "..");
export const target = path.resolve(root, process.env.CARGO_TARGET_DIR ?? "target");
/** Screenshots of the main screens, kept as CI artifacts (README links them). */
export const screens = path.join(web, "test-results", "screens");

// As this workplace's Chromium must run: no sandbox as root, no GPU, and
// nothing that reaches out to the network.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export const LAPTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitForHealth(url) {
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the relay did not come up at ${url}`);
}

/**
 * A relay on a loopback port with its own data directory, its logs (debug
 * level) collected in `log`, and `args` passed after its own (`--web-dir
 * DIR` to serve a folder instead of its built-in client). `start()` starts
 * it again on the same port and directory; `kill()` is `kill -9`. `profile`
 * is the cargo profile whose build to run: `debug` (the tests'), or
 * `release` (the benchmark's, web/bench/measure.mjs);
 * `CAUCUS_RELAY_PROFILE` sets it too.
 */
export async function startRelay({ port, dataDir, args = [], profile = process.env.CAUCUS_RELAY_PROFILE ?? "debug" } = {}) {
  port ??= await freePort();
  dataDir ??= mkdtempSync(path.join(os.tmpdir(), "caucus-web-"));
  const relay = { port, dataDir, url: `http://127.0.0.1:${port}/`, ws: `ws://127.0.0.1:${port}`, log: [] };
  relay.start = async () => {
    relay.child = spawn(
      path.join(target, profile, "caucus-server"),
      ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, ...args],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "debug" } },
    );
    for (const stream of [relay.child.stdout, relay.child.stderr]) {
      stream.on("data", (chunk) => relay.log.push(String(chunk)));
    }
    await waitForHealth(`${relay.url}healthz`);
  };
  relay.kill = () =>
    new Promise((resolve) => {
      relay.child.once("exit", resolve);
      relay.child.kill("SIGKILL");
    });
  relay.stop = async () => {
    if (relay.child.exitCode === null && relay.child.signalCode === null) await relay.kill();
  };
  relay.remove = () => rmSync(dataDir, { recursive: true, force: true });
  await relay.start();
  return relay;
}

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
}

/**
 * A person's own browser (a separate context: its own IndexedDB, its own
 * device) on the relay's page. Page errors are collected in `errors`.
 */
export async function person(browser, relay, name, viewport = PHONE) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${name} console: ${m.text()}`);
  });
  const frames = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => frames.push(String(f.payload))));
  return { name, page, context, errors, frames };
}

/** Open `url` and wait until the client machine is loaded. */
export async function visit(page, url) {
  await page.goto(url);
  await page.waitForSelector("#app[data-ready=true]", { timeout: 30_000 });
}

export async function screenshot(page, name) {
  mkdirSync(screens, { recursive: true });
  await page.screenshot({ path: path.join(screens, `${name}.png`), fullPage: true });
}

/**
 * The mediator starts a mediation: their name, and each side with the
 * people to invite. Leaves the mediator on the session's screen.
 */
export async function createMediation(mediator, relay, name, sides) {
  const page = mediator.page;
  await visit(page, relay.url);
  await page.getByRole("link", { name: "Start a new mediation" }).click();
  await page.getByLabel("Your name, as the parties will see it").fill(name);
  for (let i = 2; i < sides.length; i++) await page.getByRole("button", { name: "Add another side" }).click();
  for (const [i, [label, people]] of sides.entries()) {
    await page.getByLabel("Name of the side").nth(i).fill(label);
    await page.getByLabel("Who to invite (one name per line)").nth(i).fill(people.join("\n"));
  }
  await page.getByRole("button", { name: "Create the mediation" }).click();
  await page.getByRole("heading", { name: "Invitations" }).waitFor();
}

/** "Li Chen's", "Rhys Davies'": as the screens write it. */
export function possessive(name) {
  return name.endsWith("s") ? `${name}'` : `${name}'s`;
}

/** The web link of `name`'s invitation, as the mediator's screen shows it. */
export function inviteLink(mediator, name) {
  return mediator.page.getByLabel(`${possessive(name)} invitation link`).inputValue();
}

/**
 * `who` opens their invitation link, compares the mediator's safety code,
 * joins and waits; the mediator compares `who`'s safety code and lets them
 * in. Leaves `who` in their private room.
 */
export async function joinAndAdmit(mediator, who, link) {
  await visit(who.page, link);
  const mediatorCode = await who.page.locator(".code").first().textContent();
  await who.page.getByRole("button", { name: "Join the mediation" }).click();
  await who.page.getByRole("heading", { name: "Waiting for the mediator to let you in" }).waitFor();
  const myCode = await who.page.locator(".big .code").textContent();
  // The codes each side reads aloud are the ones the other sees.
  const ownCode = await mediator.page.locator(".own-code .code").textContent();
  if (ownCode !== mediatorCode) throw new Error(`${who.name} sees mediator code ${mediatorCode}, the mediator reads ${ownCode}`);
  const waiting = mediator.page.getByRole("region", { name: "Waiting to be let in" });
  await waiting.getByText(myCode).waitFor();
  await mediator.page.getByRole("button", { name: `Let ${who.name} in` }).click();
  await who.page.getByRole("heading", { name: "Your private room" }).waitFor({ timeout: 20_000 });
  return { mediatorCode, myCode };
}

/** `who` writes `text` in the room shown, marked as said. */
export async function say(who, text, { mayShare = false } = {}) {
  await who.page.getByLabel("Write a message").fill(text);
  if (mayShare) await who.page.getByRole("radio", { name: /may share it/ }).check();
  await who.page.getByRole("button", { name: "Send", exact: true }).click();
  await who.page.locator(".message:not(.sending)").getByText(text, { exact: true }).first().waitFor();
}

/** The mediator goes to a room by its tab. */
export async function goTo(mediator, tab) {
  await mediator.page.getByRole("navigation", { name: "Rooms" }).getByRole("button", { name: tab }).click();
}

/**
 * Note, in the page, what the client machine tells the driver that no
 * screen shows: every `warning` event (a gap, a failed verification, a
 * replay, a connection problem, a rollback), every `rejected` event, and
 * every operation that ended in an error. The driver parses each of them
 * with `JSON.parse`, which is watched (it is not changed). Call before the
 * first `visit`; `machineProblems(who)` reads what the page now shows has
 * been noted since it was (re)loaded.
 */
export async function watchMachine(who) {
  await who.context.addInitScript(() => {
    const parse = JSON.parse;
    const noted = [];
    Object.defineProperty(window, "caucusProblems", { value: noted });
    JSON.parse = function (text, reviver) {
      const value = parse.call(this, text, reviver);
      if (value !== null && typeof value === "object") {
        if (value.type === "warning" || value.type === "rejected") noted.push(value);
        else if (typeof value.op === "number" && "error" in value) noted.push({ type: "failed", ...value });
      }
      return value;
    };
  });
}

/** What `watchMachine` has noted in `who`'s page since it was loaded. */
export async function machineProblems(who) {
  return (await who.page.evaluate(() => window.caucusProblems ?? [])).map((p) => `${who.name}: ${JSON.stringify(p)}`);
}

/**
 * Everything in the page's IndexedDB database `name`, as stored: every byte
 * string (Uint8Array, ArrayBuffer, string), keys included, how many values
 * each object store holds, and what each CryptoKey says of itself — and
 * whether Web Crypto lets it be exported.
 */
export function rawDatabase(page, name) {
  return page.evaluate(async (name) => {
    const result = (request) =>
      new Promise((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    const db = await result(indexedDB.open(name));
    const out = { bytes: [], counts: {}, keys: [] };
    const cryptoKeys = [];
    const walk = (v) => {
      if (v instanceof CryptoKey) {
        cryptoKeys.push(v);
        out.keys.push({
          extractable: v.extractable,
          algorithm: v.algorithm.name,
          length: v.algorithm.length,
          usages: v.usages,
        });
      } else if (ArrayBuffer.isView(v)) {
        out.bytes.push(Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)));
      } else if (v instanceof ArrayBuffer) {
        out.bytes.push(Array.from(new Uint8Array(v)));
      } else if (typeof v === "string") {
        out.bytes.push(Array.from(new TextEncoder().encode(v)));
      } else if (v !== null && typeof v === "object") {
        Object.values(v).forEach(walk);
      }
    };
    for (const store of db.objectStoreNames) {
      const objects = db.transaction(store).objectStore(store);
      const [keys, values] = await Promise.all([result(objects.getAllKeys()), result(objects.getAll())]);
      out.counts[store] = values.length;
      keys.forEach(walk);
      values.forEach(walk);
    }
    db.close();
    out.exported = [];
    for (const key of cryptoKeys) {
      for (const format of ["raw", "jwk"]) {
        out.exported.push(await crypto.subtle.exportKey(format, key).then(() => `${format}: exported`, (e) => `${format}: ${e.name}`));
      }
    }
    return out;
  }, name);
}

/**
 * The forms `bytes` would take inside text: hex (both cases), and the part
 * of their base64 and base64url encoding that only they decide, at each of
 * the three alignments they may have in a longer encoded string.
 */
export function textForms(bytes) {
  const forms = [bytes.toString("hex"), bytes.toString("hex").toUpperCase()];
  for (const k of [0, 1, 2]) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes]);
    const whole = 4 * Math.floor(padded.length / 3);
    for (const encoding of ["base64", "base64url"]) {
      forms.push(padded.toString(encoding).slice(k === 0 ? 0 : 4, whole));
    }
  }
  return [...new Set(forms)];
}

/** Where `bytes` (or any text form of them) occur in `haystacks` ({ name, bytes }): their names. */
export function foundIn(haystacks, bytes) {
  const forms = textForms(bytes).map((f) => Buffer.from(f, "latin1"));
  return haystacks
    .filter((h) => h.bytes.includes(bytes) || forms.some((f) => h.bytes.includes(f)))
    .map((h) => h.name);
}

/** Every file under `dir`, recursively, with its bytes. */
export function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const file = path.join(e.parentPath ?? e.path, e.name);
      return { name: path.relative(dir, file), bytes: readFileSync(file) };
    });
}
