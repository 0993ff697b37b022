// How heavy and how fast the web client is (issue 13; the figures are in
// docs/performance.md, "Web client"). Not a test: nothing here passes or
// fails on a number; it prints a table and exits 0.
//
//   cargo build --release --locked -p caucus-server -p caucus-client
//   (cd web && npm ci)
//   node web/bench/measure.mjs [--join-runs 10] [--history-runs 3]
//                              [--messages 1000] [--no-profile] [--json FILE]
//
// from the repository's root, with CARGO_TARGET_DIR set when the build used
// one; about a minute on 2 cores. It starts a RELEASE
// relay (target/release/caucus-server, which serves the web/dist it was
// compiled with) on a loopback port with an empty data directory, drives
// Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) with playwright-core,
// and measures:
//
//   1. Shipped size: each file of web/dist raw, gzip -9 and brotli 11 (node's
//      zlib), and what the relay actually sends for `Accept-Encoding: gzip`
//      and `br` (it compresses per request: gzip level 6, brotli quality 4);
//      and what Chromium fetched on a cold visit.
//   2. Invite link → waiting room: a mediator (browser, through the UI)
//      creates a mediation with one invitation per run; each run opens one
//      link in a new browser context (cold: no HTTP cache, no IndexedDB) —
//      time to the invitation screen (`#app[data-ready=true]`), and to the
//      heading "Waiting for the mediator to let you in" after a click on
//      "Join the mediation". Warm: the same, in a context that opened the
//      relay's start page once before (HTTP cache and a device kept).
//   3. History: a party member in the browser ("Ms Web") joins, closes the
//      page; the mediator and a second member of the same party, both the
//      `caucus` CLI (their daemons, over JSON-RPC), write N messages of 50 to
//      400 characters in the party's private room; then (a) catch-up: the
//      browser opens the session again, fetches, verifies, decrypts, saves
//      (IndexedDB) and renders all N; (b) reopen: a reload, the N from
//      IndexedDB. One new session per run.
//
// Times are taken inside the page, from outside the app: an init script
// (BENCH_INIT) notes `performance.now()` (ms since the navigation started)
// when a DOM mutation first shows each milestone, and again after the next
// frame ("shown"). Main-thread time comes from the DevTools protocol
// (Performance.getMetrics: the renderer's task, layout and style durations
// since the navigation), long tasks from a PerformanceObserver, and
// one more catch-up and reopen under the sampling profiler show where the
// time goes (wasm, the UI's JavaScript, garbage collection, the renderer).
import { execFile, execFileSync, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import zlib from "node:zlib";
import { LAPTOP, PHONE, createMediation, inviteLink, launch, person, root, startRelay, target, web } from "../tests/support.mjs";
import { wasmBreakdown, withoutCustomSection } from "./wasm-size.mjs";

const options = parseOptions(process.argv.slice(2));
const CAUCUS = path.join(target, "release", "caucus");
const WAITING = "Waiting for the mediator to let you in";

function parseOptions(argv) {
  const o = { joinRuns: 10, historyRuns: 3, messages: 1000, profile: true, json: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--join-runs") o.joinRuns = Number(argv[++i]);
    else if (a === "--history-runs") o.historyRuns = Number(argv[++i]);
    else if (a === "--messages") o.messages = Number(argv[++i]);
    else if (a === "--no-profile") o.profile = false;
    else if (a === "--json") o.json = argv[++i];
    else {
      console.log("usage: node web/bench/measure.mjs [--join-runs N] [--history-runs N] [--messages N] [--no-profile] [--json FILE]");
      process.exit(a === "--help" ? 0 : 2);
    }
  }
  return o;
}

// ---- small helpers ---------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const max = (xs) => Math.max(...xs);
const ms = (x) => (x === undefined || Number.isNaN(x) ? "—" : `${Math.round(x)}`);
const kb = (n) => `${(n / 1024).toFixed(1)}`;
const table = (head, rows) =>
  [head, head.map((h, i) => (i === 0 ? "---" : "---:")), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");

/** This machine, as docs/performance.md records it. */
function machine(browser) {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "?";
  const mhz = /^cpu MHz\s*:\s*(.*)$/m.exec(cpuinfo)?.[1];
  const git = (args) => {
    try {
      return execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();
    } catch {
      return "?";
    }
  };
  return {
    nproc: os.availableParallelism(),
    cpu: `${model}${mhz ? ` (${Math.round(Number(mhz))} MHz)` : ""}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    system: `${os.type()} ${os.release()}`,
    chromium: browser.version(),
    node: process.version,
    commit: `${git(["rev-parse", "--short", "HEAD"])}${git(["status", "--porcelain", "--", "web/dist"]) ? " (web/dist modified)" : ""}`,
    load: os.loadavg().map((l) => l.toFixed(2)).join(" "),
    date: new Date().toISOString().slice(0, 16).replace("T", " "),
  };
}

// ---- 1. shipped size -------------------------------------------------------

/** The files the page loads: web/dist without SHA256SUMS. */
function distFiles() {
  const dist = path.join(web, "dist");
  return readdirSync(dist, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name !== "SHA256SUMS")
    .map((e) => path.relative(dist, path.join(e.parentPath, e.name)))
    .sort()
    .map((name) => ({ name, bytes: readFileSync(path.join(dist, name)) }));
}

/** GET `url` with `Accept-Encoding: encoding`; the body's bytes as received, not decoded. */
function fetchRaw(url, encoding) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = http.get(url, { headers: { "accept-encoding": encoding } }, (res) => {
      let received = 0;
      res.on("data", (chunk) => (received += chunk.length));
      res.on("end", () =>
        resolve({
          status: res.statusCode,
          encoding: res.headers["content-encoding"] ?? "identity",
          contentLength: res.headers["content-length"],
          received,
          ms: performance.now() - start,
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

/** Raw, gzip -9 and brotli 11 sizes of `bytes`. */
function compressed(bytes, text) {
  const br11 = zlib.brotliCompressSync(bytes, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      [zlib.constants.BROTLI_PARAM_MODE]: text ? zlib.constants.BROTLI_MODE_TEXT : zlib.constants.BROTLI_MODE_GENERIC,
    },
  }).length;
  return { raw: bytes.length, gzip9: zlib.gzipSync(bytes, { level: 9 }).length, br11 };
}

async function shippedSize(relay) {
  // The relay serves the web/dist it was compiled with: it must be this one.
  const sums = await (await fetch(`${relay.url}SHA256SUMS`)).text();
  if (sums !== readFileSync(path.join(web, "dist", "SHA256SUMS"), "utf8")) {
    throw new Error("the release relay serves another web/dist than this checkout's: build it again (cargo build --release -p caucus-server)");
  }
  const files = [];
  for (const { name, bytes } of distFiles()) {
    const file = { name, ...compressed(bytes, !name.endsWith(".wasm")), relay: {} };
    const url = `${relay.url}${name === "index.html" ? "" : name}`;
    for (const encoding of ["identity", "gzip", "br"]) {
      // Three fetches; the relay compresses each anew, so the time is its.
      const got = [];
      for (let i = 0; i < 3; i++) got.push(await fetchRaw(url, encoding));
      if (got[0].status !== 200) throw new Error(`${url}: HTTP ${got[0].status}`);
      file.relay[encoding] = { ...got[0], ms: median(got.map((g) => g.ms)) };
    }
    files.push(file);
  }
  const wasm = distFiles().find((f) => f.name.endsWith(".wasm"));
  const breakdown = wasmBreakdown(wasm.bytes);
  return {
    files,
    wasm: {
      sections: breakdown.sections,
      crates: breakdown.crates.slice(0, 10),
      functions: breakdown.functions.slice(0, 10),
      withoutNames: compressed(withoutCustomSection(wasm.bytes, "name"), false),
    },
  };
}

// ---- what the page shows when: the init script --------------------------------

/**
 * Runs in every page of a measured context before the app does. Notes in
 * `window.__bench` the first `performance.now()` at which: the app is ready
 * (`ready`), a click happened (`click`), the waiting room's heading is in the
 * DOM (`waiting`), `messages` messages are in the room (`history`); each
 * milestone again after the next frame (`…Shown`), when it also tells the
 * script (`__benchShown`, a Playwright binding). Counts long tasks, the
 * room's updates (`renders`: the number of messages shown changed) and the
 * app's IndexedDB write transactions (`saves`) until then.
 */
function BENCH_INIT({ messages, waiting }) {
  const marks = { longTasks: 0, longTaskMs: 0, renders: 0, saves: 0 };
  window.__bench = marks;
  const mark = (name) => {
    if (name in marks) return;
    marks[name] = performance.now();
    marks[`${name}Saves`] = marks.saves;
    // After the frame that shows it: rAF runs before that paint, the task after it.
    requestAnimationFrame(() =>
      setTimeout(() => {
        marks[`${name}Shown`] = performance.now();
        window.__benchShown?.(name);
      }, 0),
    );
  };
  addEventListener("click", () => mark("click"), true);
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
    if (mode === "readwrite") marks.saves += 1;
    return transaction.call(this, stores, mode, ...rest);
  };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        marks.longTasks += 1;
        marks.longTaskMs += e.duration;
      }
    }).observe({ type: "longtask", buffered: true });
  } catch {
    // no long task timing here
  }
  const rooms = document.getElementsByClassName("messages");
  let seen = 0;
  const check = () => {
    if (!("ready" in marks) && document.getElementById("app")?.dataset.ready === "true") mark("ready");
    if (!("waiting" in marks) && "ready" in marks) {
      for (const h of document.getElementsByTagName("h1")) if (h.textContent === waiting) mark("waiting");
    }
    if (messages && !("history" in marks) && rooms.length > 0) {
      const n = rooms[0].querySelectorAll(":scope > li.message").length;
      if (n !== seen) marks.renders += 1;
      seen = n;
      if (n >= messages) mark("history");
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-ready"] });
}

/** A new browser context (a person's browser: its own cache and IndexedDB) whose pages run BENCH_INIT. */
async function benchContext(browser, { messages = 0, viewport = PHONE } = {}) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(BENCH_INIT, { messages, waiting: WAITING });
  const shown = new EventEmitter();
  await context.exposeBinding("__benchShown", ({ page }, name) => shown.emit(name, page));
  /** Resolves when `page` has shown milestone `name`. */
  context.shown = (page, name) =>
    new Promise((resolve) => {
      const seen = (p) => {
        if (p !== page) return;
        shown.off(name, seen);
        resolve();
      };
      shown.on(name, seen);
    });
  return context;
}

const marksOf = (page) => page.evaluate(() => window.__bench);
const untilMark = (page, name, timeout = 60_000) =>
  page.waitForFunction((n) => window.__bench?.[n] !== undefined, name, { polling: 50, timeout });

/** Every response a page receives: its bytes on the wire and encoding. */
function countBytes(page) {
  const got = [];
  page.on("requestfinished", (request) =>
    got.push(
      (async () => {
        const sizes = await request.sizes();
        const response = await request.response();
        return {
          url: request.url(),
          body: sizes.responseBodySize,
          headers: sizes.responseHeadersSize,
          encoding: (await response?.headerValue("content-encoding")) ?? "identity",
          status: response?.status(),
        };
      })(),
    ),
  );
  return () => Promise.all(got);
}

// ---- 2. invite link → waiting room ---------------------------------------------

async function joinTimes(browser, relay, runs) {
  const mediator = await person(browser, relay, "Mediator", LAPTOP);
  const cold = Array.from({ length: runs }, (_, i) => `Cold Guest ${i + 1}`);
  const warm = Array.from({ length: runs }, (_, i) => `Warm Guest ${i + 1}`);
  await createMediation(mediator, relay, "Ms Mediator", [
    ["Claimant", cold],
    ["Respondent", warm],
  ]);
  const links = {};
  for (const name of [...cold, ...warm]) links[name] = await inviteLink(mediator, name);

  const once = async (link, { primed }) => {
    const context = await benchContext(browser);
    if (primed) {
      // A first visit: the start page (HTTP cache filled, a device made and kept).
      const first = await context.newPage();
      await first.goto(relay.url);
      await untilMark(first, "ready");
      await first.close();
    }
    const page = await context.newPage();
    const transferred = countBytes(page);
    const shown = context.shown(page, "ready");
    const start = performance.now();
    await page.goto(link);
    await shown;
    const ready = performance.now() - start;
    await page.getByRole("button", { name: "Join the mediation" }).click();
    await page.getByRole("heading", { name: WAITING }).waitFor({ timeout: 30_000 });
    const waiting = performance.now() - start;
    await untilMark(page, "waitingShown");
    const marks = await marksOf(page);
    // When the page's own files had arrived (Resource Timing, ms from navigation start).
    const loaded = await page.evaluate(() => {
      const end = (suffix) => performance.getEntriesByType("resource").find((e) => e.name.endsWith(suffix))?.responseEnd;
      const nav = performance.getEntriesByType("navigation")[0];
      return { html: nav.responseEnd, js: end(".js"), wasm: end(".wasm"), dcl: nav.domContentLoadedEventEnd };
    });
    const responses = await transferred();
    await context.close();
    return {
      // From outside: page.goto() called → the milestone seen (the waiting
      // room as Playwright finds it, after its click).
      ready,
      waiting,
      // Inside the page, ms from navigation start; the click as Playwright made it.
      page: {
        ...loaded,
        ready: marks.readyShown,
        click: marks.click,
        waiting: marks.waitingShown,
        joinRoundTrip: marks.waitingShown - marks.click,
        withoutClicking: marks.readyShown + (marks.waitingShown - marks.click),
      },
      bytes: responses.reduce((n, r) => n + r.body + r.headers, 0),
      responses,
    };
  };
  const result = { cold: [], warm: [] };
  for (let i = 0; i < runs; i++) {
    result.cold.push(await once(links[cold[i]], { primed: false }));
    result.warm.push(await once(links[warm[i]], { primed: true }));
  }
  await mediator.context.close();
  return result;
}

// ---- 3. history: the caucus CLI writes, the browser reads ------------------------

/** Run `caucus --json --state STATE ARGS…` to its end; its JSON lines. */
function caucus(state, args) {
  return new Promise((resolve, reject) =>
    execFile(CAUCUS, ["--json", "--state", state, ...args], { timeout: 120_000 }, (error, stdout, stderr) =>
      error
        ? reject(new Error(`caucus ${args[0]}: ${stderr || error.message}`))
        : resolve(stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l))),
    ),
  );
}

/** `caucus daemon` on a state directory, and a JSON-RPC connection to it (one request at a time). */
async function daemon(state, server) {
  const child = spawn(CAUCUS, ["--json", "--state", state, "daemon", "--server", server], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c) => (stderr += c));
  await new Promise((resolve, reject) => {
    child.stdout.once("data", resolve); // {"daemon": …, "relay": …} once it serves
    child.once("exit", () => reject(new Error(`caucus daemon stopped: ${stderr}`)));
  });
  const socket = net.createConnection(path.join(state, "daemon.sock"));
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  let buffer = "";
  let waiting;
  socket.on("data", (chunk) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const message = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (message.method === "output") waiting.lines.push(message.params.data);
      else if (message.error) waiting.reject(new Error(`${waiting.method}: ${message.error.message}`));
      else waiting.resolve(waiting.lines);
    }
  });
  let queue = Promise.resolve();
  let id = 0;
  return {
    rpc(method, params) {
      const done = queue.then(
        () =>
          new Promise((resolve, reject) => {
            waiting = { method, lines: [], resolve, reject };
            socket.write(`${JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params })}\n`);
          }),
      );
      queue = done.catch(() => {});
      return done;
    },
    stop() {
      socket.destroy();
      return new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
      });
    },
  };
}

/** `n` message texts of 50 to 400 characters, numbered, the same every time. */
function texts(n) {
  let seed = 13;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const words = (
    "the rota accounts partnership practice retire share buy-out valuation March surgery patients " +
    "locum income list premises lease bank loan goodwill pension notice partner meeting weekend " +
    "fair agreed never told asked before after money time years two months"
  ).split(" ");
  return Array.from({ length: n }, (_, i) => {
    const length = 50 + Math.floor(random() * 351);
    let text = `${i + 1}.`;
    while (text.length < length) text += ` ${words[Math.floor(random() * words.length)]}`;
    return `${text.slice(0, length - 1)}.`;
  });
}

/**
 * A session whose party "Claimant" has two members: Ms Web (this
 * browser context, offline once it has joined) and Mr Cli; the mediator and
 * Mr Cli then write `n` messages, alternately, in Claimant's private room.
 */
async function historySession(browser, relay, n) {
  const mediatorDir = mkdtempSync(path.join(os.tmpdir(), "caucus-bench-m-"));
  const memberDir = mkdtempSync(path.join(os.tmpdir(), "caucus-bench-p-"));
  const m = await daemon(mediatorDir, relay.ws);
  const [{ session }] = await m.rpc("session", { command: "create", server: relay.ws, name: "Ms Mediator", parties: ["Claimant"] });
  const at = { server: relay.ws, session };
  const invite = async (name) => (await m.rpc("invite", { ...at, party: "Claimant", name, auto_admit: true }))[0].link;
  await caucus(memberDir, ["join", await invite("Mr Cli"), "--wait", "60"]);
  const c = await daemon(memberDir, relay.ws);

  const context = await benchContext(browser, { messages: n });
  const page = await context.newPage();
  await page.goto(`${relay.url}#${await invite("Ms Web")}`);
  await untilMark(page, "ready");
  await page.getByRole("button", { name: "Join the mediation" }).click();
  await page.getByRole("heading", { name: "Your private room" }).waitFor({ timeout: 30_000 });
  await page.close();

  const all = texts(n);
  const start = performance.now();
  await Promise.all(
    [m, c].map(async (who, k) => {
      for (let i = k; i < n; i += 2) {
        await who.rpc("send", { ...at, room: k === 0 ? "Claimant" : "mine", text: all[i], may_share: k === 1 && i % 3 === 0 });
      }
    }),
  );
  const written = performance.now() - start;
  return {
    session,
    context,
    url: `${relay.url}#session=${session}`,
    written,
    chars: all.reduce((s, t) => s + t.length, 0),
    async close() {
      await context.close();
      await m.stop();
      await c.stop();
      rmSync(mediatorDir, { recursive: true, force: true });
      rmSync(memberDir, { recursive: true, force: true });
    },
  };
}

// (Not ScriptDuration: after a reload it counts a small part of what the
// profiler sees.)
const METRICS = ["TaskDuration", "LayoutDuration", "RecalcStyleDuration"];

async function rendererMetrics(cdp) {
  const { metrics } = await cdp.send("Performance.getMetrics");
  return Object.fromEntries(metrics.filter((m) => METRICS.includes(m.name)).map((m) => [m.name, m.value * 1000]));
}

/**
 * Open the session (`url`), or reload the page when `url` is undefined,
 * until all `n` messages are shown. With `profile`, under the sampling
 * profiler (and its profile returned).
 */
async function openHistory(page, url, n, { profile = false } = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  if (profile) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 250 });
    await cdp.send("Profiler.start");
  }
  const frames = { n: 0, bytes: 0 };
  const count = (ws) => ws.on("framereceived", (f) => ((frames.n += 1), (frames.bytes += f.payload.length)));
  page.on("websocket", count);
  const shown = page.context().shown(page, "history");
  if (url) await page.goto(url);
  else await page.reload();
  await shown;
  // Chromium counts these durations afresh for each document: from the
  // navigation to now.
  const main = await rendererMetrics(cdp);
  const framesThen = { ...frames };
  page.off("websocket", count);
  const cpu = profile ? (await cdp.send("Profiler.stop")).profile : undefined;
  const marks = await marksOf(page);
  const messages = await page.locator("ol.messages > li.message").count();
  if (messages !== n) throw new Error(`${messages} messages shown, not ${n}`);
  await cdp.detach();
  return {
    ready: marks.readyShown,
    dom: marks.history,
    shown: marks.historyShown,
    main,
    longTasks: marks.longTasks,
    longTaskMs: marks.longTaskMs,
    renders: marks.renders,
    saves: marks.historySaves,
    frames: framesThen,
    cpu,
  };
}

async function history(browser, relay, runs, n) {
  const result = { catchUp: [], reopen: [], written: [] };
  for (let i = 0; i < runs; i++) {
    const s = await historySession(browser, relay, n);
    result.written.push({ ms: s.written, chars: s.chars });
    // A page on the relay's origin first, so that the renderer the
    // DevTools session attaches to is the one the session opens in.
    const page = await s.context.newPage();
    await page.goto(`${relay.url}healthz`);
    result.catchUp.push(await openHistory(page, s.url, n));
    await page.waitForTimeout(500); // let the last saves and acknowledgements settle
    result.reopen.push(await openHistory(page, undefined, n));
    await s.close();
  }
  return result;
}

/** Self time of a CPU profile by kind of code, and its heaviest functions. */
function summarise(profile) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const kinds = new Map();
  const functions = new Map();
  for (const [id, t] of self) {
    const { functionName: name, url } = nodes.get(id).callFrame;
    const kind =
      name === "(idle)"
        ? "idle"
        : name === "(garbage collector)"
          ? "garbage collection"
          : name === "(program)"
            ? "renderer (not JS: layout, style, paint, IPC…)"
            : url.includes(".wasm") || url.startsWith("wasm://")
              ? "WebAssembly (client machine)"
              : url.includes("/assets/app-")
                ? "JavaScript of app-*.js (UI, driver, bindings)"
                : name === "(root)"
                  ? "idle"
                  : "other JavaScript / browser built-ins";
    kinds.set(kind, (kinds.get(kind) ?? 0) + t);
    if (kind !== "idle") {
      const key = `${name || "(anonymous)"} ${url ? `[${path.basename(url).replace(/-[0-9a-f]{16}/, "-*")}]` : ""}`;
      functions.set(key, (functions.get(key) ?? 0) + t);
    }
  }
  const byTime = (m) => [...m].sort((a, b) => b[1] - a[1]);
  return { kinds: byTime(kinds), functions: byTime(functions).slice(0, 12) };
}

async function profiled(browser, relay, n) {
  const s = await historySession(browser, relay, n);
  const page = await s.context.newPage();
  await page.goto(`${relay.url}healthz`);
  const catchUp = await openHistory(page, s.url, n, { profile: true });
  await page.waitForTimeout(500);
  const reopen = await openHistory(page, undefined, n, { profile: true });
  await s.close();
  return { catchUp: { shown: catchUp.shown, ...summarise(catchUp.cpu) }, reopen: { shown: reopen.shown, ...summarise(reopen.cpu) } };
}

// ---- the report -----------------------------------------------------------------

function report(r) {
  const out = [];
  const m = r.machine;
  out.push(
    `Caucus web client, ${m.date} UTC, commit ${m.commit}`,
    `machine: nproc ${m.nproc}, ${m.cpu}, ${m.memory}, ${m.system}; Chromium ${m.chromium}; node ${m.node}; load average (1, 5, 15 min) at start ${m.load}, at the end ${m.loadAtEnd}`,
    "",
    "1. Shipped size (KiB; relay = bytes the release relay sent for that Accept-Encoding)",
    "",
  );
  const sum = (f) => r.size.files.reduce((n, x) => n + f(x), 0);
  out.push(
    table(
      ["file", "raw", "gzip -9", "brotli 11", "relay gzip", "relay br", "fetch from the relay, gzip / br (ms)"],
      [
        ...r.size.files.map((f) => [
          f.name,
          kb(f.raw),
          kb(f.gzip9),
          kb(f.br11),
          kb(f.relay.gzip.received),
          kb(f.relay.br.received),
          `${f.relay.gzip.ms.toFixed(1)} / ${f.relay.br.ms.toFixed(1)}`,
        ]),
        [
          "**total**",
          kb(sum((f) => f.raw)),
          kb(sum((f) => f.gzip9)),
          kb(sum((f) => f.br11)),
          kb(sum((f) => f.relay.gzip.received)),
          kb(sum((f) => f.relay.br.received)),
          `${sum((f) => f.relay.gzip.ms).toFixed(1)} / ${sum((f) => f.relay.br.ms).toFixed(1)}`,
        ],
        ["(caucus-*.wasm without its name section)", kb(r.size.wasm.withoutNames.raw), kb(r.size.wasm.withoutNames.gzip9), kb(r.size.wasm.withoutNames.br11), "", "", ""],
      ],
    ),
  );
  const chunked = r.size.files.every((f) => f.relay.gzip.contentLength === undefined && f.relay.br.contentLength === undefined);
  const plain = r.size.files.every((f) => Number(f.relay.identity.contentLength) === f.raw);
  out.push(
    `Content-Length: ${plain ? "the file's size without compression" : "?"}; ${chunked ? "none with gzip or br (compressed per request, sent chunked)" : "also when compressed"}`,
  );
  const wasm = r.size.wasm.sections;
  const total = wasm.reduce((n, s) => n + s.bytes, 0);
  out.push(`wasm sections: ${wasm.slice(0, 4).map((s) => `${s.name} ${kb(s.bytes)} KiB (${((100 * s.bytes) / total).toFixed(0)} %)`).join(", ")}`);
  const cold = r.join.cold[0].responses;
  const encodings = [...new Set(cold.map((x) => x.encoding))].join(", ");
  out.push(
    `Chromium, cold invite link: ${cold.length} responses, ${kb(median(r.join.cold.map((x) => x.bytes)))} KiB on the wire (Content-Encoding: ${encodings}); warm: ${kb(median(r.join.warm.map((x) => x.bytes)))} KiB`,
    "",
    `2. Invite link → waiting room (ms, median / max of ${r.join.cold.length} runs; new browser context each run)`,
    "",
  );
  const mm = (xs) => `${ms(median(xs))} / ${ms(max(xs))}`;
  const both = (label, f) => [label, mm(r.join.cold.map(f)), mm(r.join.warm.map(f))];
  const received = (runs) => ["html", "js", "wasm"].map((k) => ms(median(runs.map((x) => x.page[k])))).join(", ");
  out.push(
    table(
      ["", "cold", "warm (second visit)"],
      [
        both("**invitation screen shown** (in page, from navigation start)", (x) => x.page.ready),
        ["… index.html, app-*.js, caucus-*.wasm received (medians)", received(r.join.cold), received(r.join.warm)],
        both("click → **waiting room shown** (in page: the join round trip)", (x) => x.page.joinRoundTrip),
        both("**invitation + join**, without the time to click (sum of the two)", (x) => x.page.withoutClicking),
        both("from outside: page.goto → invitation screen", (x) => x.ready),
        both("from outside: page.goto → waiting room (with Playwright finding and clicking the button)", (x) => x.waiting),
      ],
    ),
    "",
    `3. ${r.messages} messages of history in a party's private room (ms, median of ${r.history.catchUp.length} runs; max in brackets)`,
    "",
  );
  const row = (label, runs) => {
    const med = (f) => ms(median(runs.map(f)));
    return [
      label,
      `${med((x) => x.shown)} (${ms(max(runs.map((x) => x.shown)))})`,
      med((x) => x.ready),
      med((x) => x.main.TaskDuration),
      med((x) => x.main.LayoutDuration + x.main.RecalcStyleDuration),
      `${med((x) => x.longTaskMs)} in ${med((x) => x.longTasks)}`,
    ];
  };
  out.push(
    table(
      ["", "navigation → all shown", "app ready", "main thread busy", "of it layout + style", "long tasks (ms in n)"],
      [row("catch-up (fetch, verify, decrypt, save, render)", r.history.catchUp), row("reopen (reload: from IndexedDB)", r.history.reopen)],
    ),
  );
  const h = r.history;
  const med = (runs, f) => Math.round(median(runs.map(f)));
  out.push(
    `until all shown (medians): catch-up ${med(h.catchUp, (x) => x.frames.n)} websocket frames, ${kb(med(h.catchUp, (x) => x.frames.bytes))} KiB received, ` +
      `${med(h.catchUp, (x) => x.saves)} IndexedDB write transactions, the room redrawn with more messages ${med(h.catchUp, (x) => x.renders)} times; ` +
      `reopen ${med(h.reopen, (x) => x.frames.n)} frames, ${med(h.reopen, (x) => x.saves)} write transactions, ${med(h.reopen, (x) => x.renders)} redraws`,
  );
  const w = r.history.written;
  out.push(
    `writing them with the caucus CLI (mediator + party member, one request at a time each): ${ms(median(w.map((x) => x.ms)))} ms, ${Math.round(r.messages / (median(w.map((x) => x.ms)) / 1000))} messages/s, ${Math.round(median(w.map((x) => x.chars)) / r.messages)} characters on average`,
  );
  if (r.profile) {
    for (const [label, p] of [
      ["catch-up", r.profile.catchUp],
      ["reopen", r.profile.reopen],
    ]) {
      out.push(
        "",
        `where the time goes, ${label} under the sampling profiler (all shown at ${ms(p.shown)} ms; self time, ms):`,
        ...p.kinds.map(([k, t]) => `  ${ms(t).padStart(6)}  ${k}`),
        "  heaviest functions:",
        ...p.functions.map(([f, t]) => `  ${ms(t).padStart(6)}  ${f.length > 110 ? `${f.slice(0, 107)}...` : f}`),
      );
    }
  }
  return out.join("\n");
}

// ---- main -----------------------------------------------------------------------

const relay = await startRelay({ profile: "release" });
const browser = await launch();
try {
  const result = { machine: machine(browser), messages: options.messages };
  process.stderr.write("shipped size…\n");
  result.size = await shippedSize(relay);
  process.stderr.write(`invite link → waiting room, ${options.joinRuns} cold and ${options.joinRuns} warm runs…\n`);
  result.join = await joinTimes(browser, relay, options.joinRuns);
  process.stderr.write(`${options.messages} messages of history, ${options.historyRuns} runs…\n`);
  result.history = await history(browser, relay, options.historyRuns, options.messages);
  if (options.profile) {
    process.stderr.write("one more catch-up and reopen under the profiler…\n");
    result.profile = await profiled(browser, relay, options.messages);
  }
  result.machine.loadAtEnd = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(report(result));
  if (options.json) {
    for (const run of [...result.join.cold, ...result.join.warm]) delete run.responses;
    writeFileSync(options.json, `${JSON.stringify(result, null, 1)}\n`);
  }
} finally {
  await browser.close();
  await relay.stop();
  relay.remove();
}
