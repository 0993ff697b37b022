// The client machine in a real browser: Debian's Chromium, driven by
// Playwright, against a real relay on a loopback port. Two browser
// contexts — a mediator and a claimant — run a private exchange; all the
// cryptography runs in the page, compiled to WebAssembly, and nothing the
// claimant's page sends over its websocket holds her words in the clear.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = path.join(web, "..");
const target = path.resolve(root, process.env.CARGO_TARGET_DIR ?? "target");

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

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };

function freePort() {
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
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the relay did not come up at ${url}`);
}

let relay, relayUrl, dataDir, pages, pagesUrl, browser;

before(async () => {
  const port = await freePort();
  dataDir = mkdtempSync(path.join(os.tmpdir(), "caucus-web-"));
  relay = spawn(path.join(target, "debug/caucus-server"), [
    "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir,
  ], { stdio: "ignore" });
  relayUrl = `ws://127.0.0.1:${port}`;
  await waitForHealth(`http://127.0.0.1:${port}/healthz`);

  pages = createServer((req, res) => {
    const file = req.url === "/" ? "/test-page/index.html" : req.url.split("?")[0];
    const full = path.join(web, path.normalize(file));
    if (!full.startsWith(web + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = readFileSync(full);
      res.writeHead(200, { "content-type": TYPES[path.extname(full)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => pages.listen(0, "127.0.0.1", r));
  pagesUrl = `http://127.0.0.1:${pages.address().port}/`;

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await browser?.close();
  pages?.close();
  relay?.kill();
  rmSync(dataDir, { recursive: true, force: true });
});

async function openPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(pagesUrl);
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
      await d.run((dev, now) => dev.join(link, now));
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
