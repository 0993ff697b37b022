// The relay killed with `kill -9` mid-session and started again on the same
// port and data directory: the browsers reconnect by themselves, and
// nothing is lost, nothing is duplicated, nothing is undecryptable.
//
// A mediator and two parties, each in their own browser, talk; the relay is
// killed. While it is down every screen says it is reconnecting, and what
// people write shows as "sending…". Once it is back, each message written
// meanwhile is delivered exactly once — on the mediator's screen and on its
// author's, no longer "sending…" — everything said before the kill is still
// on every screen exactly once, no page shows an error, and the client
// machine noted no warning (a gap, a replay, a message that does not open);
// no page sent a frame while one of its saves was under way; a reloaded page
// shows the whole history again from its own IndexedDB, signs in without
// joining again, and asks the relay only for what came after. A burst of twenty messages cut by the kill
// reaches the mediator exactly once each, in order.
//
// The cases a kill can cut, each pinned down:
//
//  - the burst: whether a post is in flight at the kill is a race;
//  - with the relay down, a party writes a second message while the first
//    is still "sending…";
//  - a post in flight that the relay never read (the relay stopped with
//    SIGSTOP first, so it cannot read it, then killed) is sent again;
//  - a post the relay stored whose reply was lost (a proxy in front of the
//    relay drops what it sends; the relay's /metrics tells when it has
//    committed) shows on its author's screen, once, and is not sent again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import {
  LAPTOP,
  createMediation,
  goTo,
  inviteLink,
  joinAndAdmit,
  launch,
  machineProblems,
  person,
  freePort,
  say,
  startRelay,
  watchMachine,
} from "./support.mjs";

let relay, browser, proxyPort;
before(async () => {
  // The page is served through a proxy (`proxyTo`) in one test: the relay
  // is told the proxy's URL, as behind a real one, for a login there names it.
  proxyPort = await freePort();
  relay = await startRelay({ args: ["--public-url", `ws://127.0.0.1:${proxyPort}`] });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  relay?.remove();
});

/** Generous, for a slow two-core machine: reconnecting waits up to 5 s between tries. */
const BACK = 60_000;

/** The entries of the room on `who`'s screen, in order: their words, and whether still sending. */
function shown(who) {
  return who.page.$$eval(".messages > li.message", (items) =>
    items.map((li) => ({
      text: li.querySelector(".text")?.textContent ?? "",
      meta: li.querySelector(".meta")?.textContent ?? "",
      sending: li.classList.contains("sending"),
    })),
  );
}

/** How many times `text` is on `who`'s screen (in the room shown), and how many of those still sending. */
async function timesShown(who, text) {
  const all = (await shown(who)).filter((m) => m.text === text);
  return { times: all.length, sending: all.filter((m) => m.sending).length };
}

/** Wait until `text` is on `who`'s screen as said (stored, not sending). */
function delivered(who, text, timeout = BACK) {
  return who.page.locator(".messages > li.message:not(.sending)").getByText(text, { exact: true }).first().waitFor({ timeout });
}

/** `who` writes `text` and presses Send, without waiting for the relay. */
async function write(who, text, { timeout = 30_000 } = {}) {
  await who.page.getByLabel("Write a message").fill(text);
  await who.page.getByRole("button", { name: "Send", exact: true }).click({ timeout });
}

/** Each of `texts` is on `who`'s screen exactly once, stored. */
async function eachOnce(who, texts, where) {
  for (const text of texts) {
    assert.deepEqual(await timesShown(who, text), { times: 1, sending: 0 }, `${who.name} (${where}) shows “${text}” once, stored`);
  }
}

/** What the pages show as errors or alerts (an error line, a failure of the driver). */
async function shownErrors(people) {
  const out = [];
  for (const p of people) {
    for (const text of await p.page.locator(".error, [role=alert]").allTextContents()) out.push(`${p.name}: ${text}`);
  }
  return out;
}

/**
 * Chromium's own console line for each reconnection the relay refused
 * while it was down — expected then, and only then.
 */
function refusedWhileDown(line) {
  return new RegExp(`^.+ console: WebSocket connection to '${relay.ws}/' failed: `).test(line);
}

/**
 * Note, in `who`'s page, every frame its websocket sends while an IndexedDB
 * readwrite transaction (a save) is under way: the driver must send nothing
 * before the save it follows has committed.
 */
async function watchSaves(who) {
  await who.context.addInitScript(() => {
    const noted = { saving: 0, saves: 0, sent: 0, sentWhileSaving: [] };
    Object.defineProperty(window, "caucusSaves", { value: noted });
    const transaction = IDBDatabase.prototype.transaction;
    IDBDatabase.prototype.transaction = function (stores, mode, options) {
      const tx = transaction.call(this, stores, mode, options);
      if (mode === "readwrite") {
        noted.saving += 1;
        const ended = () => {
          noted.saving -= 1;
          noted.saves += 1;
        };
        tx.addEventListener("complete", ended);
        tx.addEventListener("abort", ended);
      }
      return tx;
    };
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (frame) {
      noted.sent += 1;
      if (noted.saving > 0) noted.sentWhileSaving.push(String(frame).slice(0, 100));
      return send.call(this, frame);
    };
  });
}

/** Poll `check` (in node) until it holds. */
async function until(check, what, timeout = BACK) {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every request frame `who`'s page sent of `type`, parsed. */
function sentOfType(who, type, from = 0) {
  return who.frames.slice(from).map((f) => JSON.parse(f)).filter((f) => f.type === type);
}

/** The relay's count of committed store batches (its /metrics). */
async function commits(at = relay) {
  const text = await (await fetch(`${at.url}metrics`)).text();
  return Number(/^caucus_commits_total (\d+)$/m.exec(text)[1]);
}

/** A mediator and the parties of `sides` (one person each), every party let in. */
async function mediation(at, sides) {
  const mediator = await person(browser, at, "Ms Mediator", LAPTOP);
  const parties = sides.map(([, name]) => name);
  const people = [mediator];
  for (const name of parties) people.push(await person(browser, at, name));
  for (const p of people) {
    await watchMachine(p);
  }
  await createMediation(
    mediator,
    at,
    "Ms Mediator",
    sides.map(([side, name]) => [side, [name]]),
  );
  for (const p of people.slice(1)) await joinAndAdmit(mediator, p, await inviteLink(mediator, p.name));
  return people;
}

/** After a test, whatever it met: its browsers closed, the relay running again for the next. */
async function close(people) {
  for (const p of people) await p.context.close().catch(() => undefined);
  if (relay.child.exitCode !== null || relay.child.signalCode !== null) await relay.start();
  else relay.child.kill("SIGCONT");
}

test("the relay killed with kill -9 mid-session and restarted: every browser reconnects, nothing is lost, duplicated or undecryptable", { timeout: 180_000 }, async () => {
  const mediator = await person(browser, relay, "Ms Mediator", LAPTOP);
  const alice = await person(browser, relay, "Alice Archer");
  const bob = await person(browser, relay, "Bob Baker");
  const people = [mediator, alice, bob];
  try {
    for (const p of people) {
      await watchMachine(p);
      await watchSaves(p);
    }
    await createMediation(mediator, relay, "Ms Mediator", [
      ["Claimant", ["Alice Archer"]],
      ["Respondent", ["Bob Baker"]],
    ]);
    await joinAndAdmit(mediator, alice, await inviteLink(mediator, "Alice Archer"));
    await joinAndAdmit(mediator, bob, await inviteLink(mediator, "Bob Baker"));

    // Before the kill: each party and the mediator, in both private rooms.
    const before = {
      claimant: ["The fence was put up without asking us.", "Thank you, Alice. What would put it right for you?"],
      respondent: ["The fence is on our side of the boundary.", "Thank you, Bob. I will come back to you shortly."],
    };
    await say(alice, before.claimant[0]);
    await say(bob, before.respondent[0]);
    await goTo(mediator, "Respondent (private)");
    await delivered(mediator, before.respondent[0]);
    await say(mediator, before.respondent[1]);
    await delivered(bob, before.respondent[1]);
    await goTo(mediator, "Claimant (private)");
    await delivered(mediator, before.claimant[0]);
    await say(mediator, before.claimant[1]);
    await delivered(alice, before.claimant[1]);
    assert.deepEqual(people.flatMap((p) => p.errors), [], "no error before the kill");

    // kill -9. Every screen says it is reconnecting.
    await relay.kill();
    for (const p of people) await p.page.getByText("Reconnecting…").waitFor({ timeout: 30_000 });

    // Written while the relay is down: each shows as "sending…".
    const down = {
      alice: "I would settle for the fence moved back by a metre.",
      bob: "We could share the cost of moving it.",
      mediator: "I am passing nothing on without your word.",
    };
    await write(alice, down.alice);
    await write(bob, down.bob);
    await write(mediator, down.mediator);
    for (const [who, text] of [[alice, down.alice], [bob, down.bob], [mediator, down.mediator]]) {
      const item = who.page.locator(".messages > li.message.sending", { hasText: text });
      await item.waitFor();
      assert.equal(await item.locator(".meta").textContent(), "You · sending…");
      assert.deepEqual(await timesShown(who, text), { times: 1, sending: 1 });
    }
    const downSince = people.map((p) => p.errors.length);

    // Started again: same port, same data directory.
    await relay.start();
    for (const p of people) await p.page.getByText("Reconnecting…").waitFor({ state: "detached", timeout: BACK });
    // Each page's errors while the relay was down were only its refused reconnections.
    for (const [i, p] of people.entries()) {
      assert.deepEqual(p.errors.slice(downSince[i]).filter((e) => !refusedWhileDown(e)), [], `${p.name}: only refused reconnections while down`);
    }
    const backSince = people.map((p) => p.errors.length);

    // Delivered, exactly once, on the author's screen and on the reader's.
    await delivered(alice, down.alice);
    await delivered(bob, down.bob);
    await delivered(mediator, down.mediator);
    await delivered(mediator, down.alice);
    await delivered(alice, down.mediator);
    // A round trip after the restart: any catch-up the reconnection started is over.
    const afterwards = "Shall we meet on site next week?";
    await say(mediator, afterwards);
    await delivered(alice, afterwards);
    await say(alice, "Yes, any morning.");
    await delivered(mediator, "Yes, any morning.");
    await goTo(mediator, "Respondent (private)");
    await delivered(mediator, down.bob);

    const claimantRoom = [...before.claimant, down.alice, down.mediator, afterwards, "Yes, any morning."];
    const respondentRoom = [...before.respondent, down.bob];
    await eachOnce(alice, claimantRoom, "her private room");
    await eachOnce(bob, respondentRoom, "his private room");
    await eachOnce(mediator, respondentRoom, "Respondent's private room");
    await goTo(mediator, "Claimant (private)");
    await delivered(mediator, "Yes, any morning.");
    await eachOnce(mediator, claimantRoom, "Claimant's private room");
    // In the order written (the one written while down by the mediator and by Alice may come either way).
    const order = (await shown(mediator)).map((m) => m.text);
    assert.deepEqual(order.slice(0, 2), before.claimant);
    assert.deepEqual(order.slice(-2), [afterwards, "Yes, any morning."]);

    // No page shows an error, none logged one since, the machines noted no
    // warning, and nothing was sent while a save was under way.
    assert.deepEqual(await shownErrors(people), []);
    for (const [i, p] of people.entries()) assert.deepEqual(p.errors.slice(backSince[i]), [], `${p.name}: no error after the restart`);
    const problems = [];
    for (const p of people) problems.push(...(await machineProblems(p)));
    assert.deepEqual(problems, [], "no warning, rejection or failed operation");
    for (const p of people) {
      const saves = await p.page.evaluate(() => window.caucusSaves);
      assert.ok(saves.saves > 0 && saves.sent > 0, `${p.name} saved and sent`);
      assert.deepEqual(saves.sentWhileSaving, [], `${p.name}: no frame left while a save was under way`);
    }

    // Reloaded after the restart: the whole history, from each page's own
    // IndexedDB — the page signs in again, does not join again, and asks
    // the relay only for what came after the last message it holds.
    for (const p of people) {
      const from = p.frames.length;
      await p.page.reload();
      await p.page.waitForSelector("#app[data-ready=true]", { timeout: 30_000 });
      await until(() => sentOfType(p, "subscribe", from).length > 0, `${p.name} subscribes again`);
      assert.ok(sentOfType(p, "auth", from).length > 0, `${p.name} signed in again`);
      assert.deepEqual(sentOfType(p, "join", from), [], `${p.name} did not join again`);
      for (const s of sentOfType(p, "subscribe", from)) {
        assert.ok(s.roster_after > 0, `${p.name} holds its rosters`);
        assert.ok(s.rooms.some((r) => r.after > 0), `${p.name} resumes after what it holds: ${JSON.stringify(s.rooms)}`);
      }
    }
    await eachOnce(alice, claimantRoom, "reloaded");
    await eachOnce(bob, respondentRoom, "reloaded");
    await goTo(mediator, "Claimant (private)");
    await delivered(mediator, "Yes, any morning.");
    await eachOnce(mediator, claimantRoom, "reloaded, Claimant's private room");
    await goTo(mediator, "Respondent (private)");
    await delivered(mediator, down.bob);
    await eachOnce(mediator, respondentRoom, "reloaded, Respondent's private room");
    assert.deepEqual(await shownErrors(people), []);
    problems.length = 0;
    for (const p of people) problems.push(...(await machineProblems(p)));
    assert.deepEqual(problems, [], "no warning after the reload");
    for (const [i, p] of people.entries()) assert.deepEqual(p.errors.slice(backSince[i]), [], `${p.name}: no error after the reload`);
  } finally {
    await close(people);
  }
});

test(
  "a kill in the middle of a burst of twenty messages: after the restart each reaches the mediator exactly once, in order",
  {
    timeout: 180_000,
  },
  async () => {
    const people = await mediation(relay, [["Claimant", "Alice Archer"], ["Respondent", "Bob Baker"]]);
    const [mediator, alice] = people;
    try {
      await goTo(mediator, "Claimant (private)");
      const burst = Array.from({ length: 20 }, (_, i) => `Point ${i + 1} of 20 in my list of concerns.`);
      // As fast as the page lets her: each as soon as Send can be pressed.
      const writing = (async () => {
        for (const text of burst) await write(alice, text, { timeout: 120_000 });
      })();
      writing.catch(() => undefined);
      await delivered(alice, burst[4]);
      await relay.kill();
      await alice.page.getByText("Reconnecting…").waitFor({ timeout: 30_000 });
      await relay.start();
      await writing;
      await delivered(alice, burst[19]);
      await delivered(mediator, burst[19]);
      // Any catch-up is over once a message sent after it arrives.
      await say(alice, "That is the whole list.");
      await delivered(mediator, "That is the whole list.");

      const seen = (await shown(mediator)).map((m) => m.text).filter((t) => burst.includes(t));
      assert.deepEqual(seen, burst, "the mediator has each of the twenty exactly once, in order");
      const own = (await shown(alice)).filter((m) => burst.includes(m.text));
      assert.deepEqual(own.map((m) => m.text), burst, "so has Alice's own screen");
      assert.ok(own.every((m) => !m.sending), "none still sending");
      assert.deepEqual(await shownErrors(people), []);
      const problems = [];
      for (const p of people) problems.push(...(await machineProblems(p)));
      assert.deepEqual(problems, [], "no warning, rejection or failed operation");
    } finally {
      await close(people);
    }
  },
);

test(
  "while the relay is down a party writes two messages: both show as sending, then each is delivered once, in order",
  {
    timeout: 180_000,
  },
  async () => {
    const people = await mediation(relay, [["Claimant", "Alice Archer"], ["Respondent", "Bob Baker"]]);
    const [mediator, alice] = people;
    try {
      await goTo(mediator, "Claimant (private)");
      await relay.kill();
      await alice.page.getByText("Reconnecting…").waitFor({ timeout: 30_000 });
      const two = ["First, while the relay is down.", "Second, while the relay is still down."];
      await write(alice, two[0]);
      await alice.page.locator(".messages > li.message.sending", { hasText: two[0] }).waitFor();
      await write(alice, two[1], { timeout: 10_000 });
      await alice.page.locator(".messages > li.message.sending", { hasText: two[1] }).waitFor();
      await relay.start();
      for (const text of two) {
        await delivered(alice, text);
        await delivered(mediator, text);
      }
      await eachOnce(alice, two, "her private room");
      await eachOnce(mediator, two, "Claimant's private room");
      assert.deepEqual((await shown(mediator)).map((m) => m.text).filter((t) => two.includes(t)), two);
      // The relay forgot where the mediator was; the mediator's page said it again.
      await alice.page.getByText("The mediator is with you").waitFor();
      assert.deepEqual(await shownErrors(people), []);
    } finally {
      await close(people);
    }
  },
);

test(
  "a message in flight when the relay is killed, before it stored it, is sent again after the restart and delivered once",
  {
    timeout: 180_000,
  },
  async () => {
    const people = await mediation(relay, [["Claimant", "Alice Archer"], ["Respondent", "Bob Baker"]]);
    const [mediator, alice] = people;
    try {
      await goTo(mediator, "Claimant (private)");
      await say(alice, "Before the relay stops.");
      await delivered(mediator, "Before the relay stops.");
      // The relay stops reading (SIGSTOP): her post leaves the page but is never read; then kill -9.
      process.kill(relay.child.pid, "SIGSTOP");
      const posts = sentOfType(alice, "post").length;
      const lost = "In flight when the relay died.";
      await write(alice, lost);
      await until(() => sentOfType(alice, "post").length > posts, "her post has left the page");
      await relay.kill();
      await alice.page.getByText("Reconnecting…").waitFor({ timeout: 30_000 });
      await relay.start();
      await alice.page.getByText("Reconnecting…").waitFor({ state: "detached", timeout: BACK });
      await say(alice, "After the restart.");
      await delivered(mediator, "After the restart.");

      await delivered(mediator, lost, 10_000);
      await eachOnce(mediator, ["Before the relay stops.", lost, "After the restart."], "Claimant's private room");
      await eachOnce(alice, ["Before the relay stops.", lost, "After the restart."], "her private room");
      assert.deepEqual(await shownErrors(people), []);
      const problems = [];
      for (const p of people) problems.push(...(await machineProblems(p)));
      assert.deepEqual(problems, [], "no gap, no failed operation");
    } finally {
      await close(people);
    }
  },
);

/**
 * A TCP proxy in front of the relay, for the page to be served through, on
 * the port the relay knows as its public URL (one proxy at a time): while
 * `withhold` is set, what the relay sends is dropped on the way.
 */
async function proxyTo(target) {
  const sockets = new Set();
  const proxy = { withhold: false };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => {
      if (!proxy.withhold) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise((r) => server.listen(proxyPort, "127.0.0.1", r));
  proxy.port = server.address().port;
  proxy.url = `http://127.0.0.1:${proxy.port}/`;
  proxy.close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return proxy;
}

test(
  "a message the relay stored whose reply the kill cut off shows once on its author's screen after the restart",
  {
    timeout: 180_000,
  },
  async () => {
    const proxy = await proxyTo(relay);
    const people = await mediation(proxy, [["Claimant", "Alice Archer"], ["Respondent", "Bob Baker"]]);
    const [mediator, alice] = people;
    try {
      await goTo(mediator, "Claimant (private)");
      await say(alice, "Before the reply is cut off.");
      await delivered(mediator, "Before the reply is cut off.");
      // Everything the relay sends is dropped: it stores her post, its reply never arrives; then kill -9.
      const stored = await commits();
      proxy.withhold = true;
      const text = "Stored, but its reply was lost.";
      await write(alice, text);
      await until(async () => (await commits()) > stored, "the relay has stored her post");
      await relay.kill();
      proxy.withhold = false;
      await alice.page.getByText("Reconnecting…").waitFor({ timeout: 30_000 });
      await relay.start();
      for (const p of people) await p.page.getByText("Reconnecting…").waitFor({ state: "detached", timeout: BACK });
      await delivered(mediator, text);
      await say(alice, "After the restart.");
      await delivered(mediator, "After the restart.");

      await eachOnce(mediator, ["Before the reply is cut off.", text, "After the restart."], "Claimant's private room");
      await delivered(alice, text, 10_000);
      await eachOnce(alice, ["Before the reply is cut off.", text, "After the restart."], "her private room");
      assert.deepEqual(await shownErrors(people), []);
    } finally {
      await close(people);
      proxy.close();
    }
  },
);
