// Mixed clients against one real relay (issue 13): the `caucus` command and
// the web client take part in the same mediation and each sees what the
// other did, checked on screen and in the command's `--json` lines.
//
// 1. A mediator on the command line (`caucus listen --follow` running all
//    along, every other command through its daemon socket) runs a session
//    with a party in the browser and a party on the command line: safety
//    codes compared across the two, admission, a private message read by
//    the CLI, a forward refused without consent, consent given on screen, a
//    reframed forward the browser party is told about, an offer made in the
//    form and read by the CLI, the agreement signed on screen and on the
//    command line, countersigned, downloaded from the page and accepted by
//    `caucus agreement verify`; the close reaches the page.
// 2. The reverse: a mediator in the browser, a party on the command line
//    (joining with the link copied from the mediator's screen) and one in
//    another browser: codes compared, a mediator-only message the screen
//    refuses to share until `caucus consent`, shared word for word, the
//    receipt in the party's `listen`; the party's gates ticked on the
//    mediator's screen; the close from the browser reaches the command line.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  startRelay,
  target,
  visit,
} from "./support.mjs";

const CAUCUS = path.join(target, "debug/caucus");

let relay, browser;
/** Every `caucus` process started and every state directory made, for the clean-up. */
const children = new Set();
const dirs = [];

before(async () => {
  relay = await startRelay();
  browser = await launch();
});
after(async () => {
  await stopChildren();
  await browser?.close();
  await relay?.stop();
  relay?.remove();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Kill every `caucus` process still running, and wait until each has gone. */
async function stopChildren() {
  await Promise.all([...children].map((c) => c.stop()));
}

/** Wait until `probe()` returns something truthy (checked every 100 ms); that value. */
async function eventually(what, probe, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A long-running `caucus` process: its JSON lines as they come, its stderr. */
class Running {
  constructor(args, env) {
    this.args = args;
    this.lines = [];
    this.stderr = "";
    this.child = spawn(CAUCUS, args, { stdio: ["ignore", "pipe", "pipe"], env });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    let partial = "";
    this.child.stdout.on("data", (chunk) => {
      const text = partial + chunk;
      const whole = text.split("\n");
      partial = whole.pop();
      // `--json` prints only JSON; anything else is kept to fail the test with, not to crash the runner.
      for (const l of whole) {
        if (!l.trim()) continue;
        try {
          this.lines.push(JSON.parse(l));
        } catch {
          this.lines.push({ notJson: l });
        }
      }
    });
    this.child.stderr.on("data", (chunk) => (this.stderr += chunk));
    children.add(this);
    this.exited.then(() => children.delete(this));
  }

  /** The first line `match` takes, once it has been printed. */
  line(what, match, timeout) {
    return eventually(what, () => {
      const found = this.lines.find(match);
      if (found) return found;
      if (this.child.exitCode !== null) throw new Error(`caucus ${this.args.join(" ")} exited before ${what}: ${this.stderr}`);
      return undefined;
    }, timeout);
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** A person using the `caucus` command: their own state directory, `--json` always. */
class Cli {
  constructor(name) {
    this.name = name;
    this.state = mkdtempSync(path.join(os.tmpdir(), "caucus-cli-"));
    dirs.push(this.state);
  }

  env() {
    const env = { ...process.env, CAUCUS_SERVER: relay.ws };
    delete env.CAUCUS_PASSPHRASE;
    if (this.session) env.CAUCUS_SESSION = this.session;
    return env;
  }

  /** Run a command to its end: `{ ok, lines, stderr }`. */
  tryRun(...args) {
    return new Promise((resolve) => {
      execFile(CAUCUS, ["--json", "--state", this.state, ...args], { env: this.env(), timeout: 60_000 }, (error, stdout, stderr) => {
        const lines = stdout.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
        resolve({ ok: error === null, lines, stderr });
      });
    });
  }

  /** Run a command that must succeed; its JSON lines. */
  async run(...args) {
    const out = await this.tryRun(...args);
    assert.ok(out.ok, `${this.name}: caucus ${args.join(" ")} failed: ${out.stderr}`);
    return out.lines;
  }

  spawn(...args) {
    return new Running(["--json", "--state", this.state, ...args], this.env());
  }

  /**
   * `caucus listen --follow`, kept running: it holds the state directory and
   * the connection (this device stays online) and serves the other commands.
   */
  async follow() {
    this.heard = this.spawn("listen", "--follow");
    await eventually(`${this.name}'s daemon socket`, () => existsSync(path.join(this.state, "daemon.sock")));
    return this.heard;
  }

  /** The first event `listen --follow` printed that `match` takes, waiting for it. */
  hears(what, match, timeout) {
    return this.heard.line(`${this.name} to hear ${what}`, match, timeout);
  }
}

/** The text of the file `who` downloads with the button named `name`. */
async function downloaded(who, name) {
  const [download] = await Promise.all([who.page.waitForEvent("download"), who.page.getByRole("button", { name }).click()]);
  return readFileSync(await download.path(), "utf8");
}

/** The text of a locator, once it is there. */
async function textOf(locator) {
  await locator.waitFor();
  return (await locator.textContent()).trim();
}

test("a mediator on the command line runs a session with a party in the browser and one on the command line", { timeout: 180_000 }, async (t) => {
  t.after(stopChildren);
  const mediator = new Cli("Ms Mediator");
  const tenant = await person(browser, relay, "Ana Ruiz");
  const landlord = new Cli("Owen Pike");

  // The mediator creates the session and keeps `listen --follow` running.
  const [created] = await mediator.run("session", "create", "--name", "Ms Mediator", "--party", "Tenants", "--party", "Landlord");
  assert.deepEqual(created.parties.map((p) => p.label), ["Tenants", "Landlord"]);
  mediator.session = landlord.session = created.session;
  await mediator.follow();
  const [mediatorId] = await mediator.run("whoami");

  // The browser party opens the web form of the CLI's link: the relay's page, the link as its fragment.
  const [invite] = await mediator.run("invite", "--party", "Tenants", "--name", "Ana Ruiz");
  assert.match(invite.link, /^caucus:invite:v1:/);
  await visit(tenant.page, `${relay.url}#${invite.link}`);
  assert.equal(await textOf(tenant.page.locator(".code").first()), mediatorId.safety_code, "the page shows the code the CLI mediator reads");
  await tenant.page.getByRole("button", { name: "Join the mediation" }).click();
  await tenant.page.getByText("The mediator is online and has been told you are here.").waitFor({ timeout: 20_000 });
  const tenantCode = await textOf(tenant.page.locator(".big .code"));
  assert.equal(await textOf(tenant.page.locator("p", { hasText: "Check that the mediator's code is" }).locator(".code")), mediatorId.safety_code);

  // The CLI mediator sees her knock with the code she reads, and admits her by it.
  const knock = await mediator.hears("Ana Ruiz knocking", (l) => l.event === "knocking" && l.name === "Ana Ruiz");
  assert.equal(knock.safety_code, tenantCode);
  const waiting = await mediator.run("waiting");
  assert.deepEqual(waiting.map((w) => [w.name, w.safety_code]), [["Ana Ruiz", tenantCode]]);
  const [admitted] = await mediator.run("admit", tenantCode);
  assert.equal(admitted.name, "Ana Ruiz");
  await tenant.page.getByRole("heading", { name: "Your private room" }).waitFor({ timeout: 20_000 });
  const tenantDevice = admitted.admitted;

  // The other party joins on the command line.
  const [link] = await mediator.run("invite", "--party", "Landlord", "--name", "Owen Pike");
  const joining = landlord.spawn("join", link.link, "--wait", "60");
  const asked = await joining.line("Owen Pike's join request", (l) => l.waiting !== undefined);
  assert.equal(asked.mediator_safety_code, mediatorId.safety_code);
  await mediator.hears("Owen Pike knocking", (l) => l.event === "knocking" && l.name === "Owen Pike");
  await mediator.run("admit", asked.safety_code);
  assert.equal((await joining.exited).code, 0, joining.stderr);
  assert.ok(joining.lines.some((l) => l.joined === created.session));
  await landlord.follow();

  // The CLI mediator goes to the tenants' room; the page says so.
  await mediator.run("location", "Tenants");
  await tenant.page.getByText("The mediator is with you").waitFor();

  // A mediator-only message written on screen, read by the CLI.
  const words = "The boiler has been broken since November and nobody came.";
  await say(tenant, words);
  const said = await mediator.hears("Ana Ruiz's message", (l) => l.event === "message" && l.text === words);
  assert.equal(said.sender, tenantDevice);
  assert.equal(said.sender_name, "Ana Ruiz");
  assert.equal(said.sharing, "mediator_only");
  assert.equal(said.room_label, "Tenants (private)");

  // Forwarding it is refused without her consent; she consents on screen; the CLI carries it reframed.
  const refused = await mediator.tryRun("forward", "--message", said.message, "--to", "Landlord");
  assert.ok(!refused.ok, "a mediator-only message is not forwarded without consent");
  assert.match(refused.stderr, /consent/);
  await tenant.page.locator(".message", { hasText: words }).getByRole("button", { name: "Let the mediator share this" }).click();
  const consent = await mediator.hears("Ana Ruiz's consent", (l) => l.event === "consent" && l.message === said.message);
  assert.equal(consent.member, tenantDevice);
  const reframed = "The tenants say the heating has not worked for months.";
  const [forwarded] = await mediator.run("forward", "--message", said.message, "--to", "Landlord", "--reframe", reframed);
  assert.equal(forwarded.forwarded, said.message);
  await tenant.page.getByText(`Shared with Landlord, reframed as: “${reframed}”`).waitFor();
  const carried = await landlord.hears("the reframed words", (l) => l.event === "forwarded");
  assert.equal(carried.text, reframed);
  assert.equal(carried.mode, "reframed");
  assert.equal(carried.author_consented, true);
  assert.equal(carried.room_label, "Landlord (private)");
  assert.ok(!landlord.heard.lines.some((l) => JSON.stringify(l).includes("November")), "the landlord never reads her own words");

  // An offer made in the page's form reaches the CLI mediator as an offer.
  await tenant.page.getByText("Make an offer").click();
  await tenant.page.getByLabel("Amount (optional)").fill("1250.50");
  await tenant.page.getByLabel("Terms in words").fill("Rent reduced until the boiler is replaced");
  await tenant.page.getByLabel("Conditions (one per line, optional)").fill("Repair within 14 days");
  await tenant.page.getByRole("button", { name: "Send offer to the mediator" }).click();
  await tenant.page.getByText("Your offer is with the mediator.").waitFor();
  const offer = await mediator.hears("the tenants' offer", (l) => l.event === "offer");
  assert.equal(offer.by, tenantDevice);
  assert.equal(offer.room_label, "Tenants (private)");
  assert.deepEqual(
    { kind: offer.offer.kind, amount: offer.offer.amount, terms: offer.offer.terms, conditions: offer.offer.conditions },
    {
      kind: "offer",
      amount: { minor: 125050, currency: "GBP", exponent: 2, text: "GBP 1250.50" },
      terms: "Rent reduced until the boiler is replaced",
      conditions: ["Repair within 14 days"],
    },
  );
  const offers = await mediator.run("offers");
  assert.ok(offers.some((o) => o.message === offer.message && o.direction === "made"));

  // The gate: both sides agree to continue, one on screen, one on the command line.
  await mediator.run("phase", "individual-meetings");
  await tenant.page.getByRole("button", { name: "We agree to continue with the mediation" }).click();
  await tenant.page.getByText("Your side has agreed to continue with the mediation.").waitFor();
  await landlord.run("agree", "continue");
  await mediator.hears("the tenants agreeing", (l) => l.event === "agreed" && l.member === tenantDevice && l.step === "continue");
  assert.deepEqual((await mediator.run("not-agreed", "continue"))[0].not_agreed, []);
  await mediator.run("phase", "agreement");
  await tenant.page.locator(".session-head .phase", { hasText: "Agreement" }).waitFor();

  // The agreement: proposed by the CLI, signed on screen and on the command line, countersigned.
  const title = "Heating repair and rent";
  const terms = "1. The landlord replaces the boiler by 1 March.\n2. Rent is reduced by GBP 150 a month until then.";
  const [proposed] = await mediator.run("agreement", "propose", "--title", title, "--terms", terms, "--question", "Can the repair be done by 1 March?");
  await tenant.page.getByText("Can the repair be done by 1 March?").waitFor();
  assert.equal(await textOf(tenant.page.locator(".agreement pre.terms")), terms);
  const early = await mediator.tryRun("agreement", "countersign");
  assert.ok(!early.ok && /still to sign/.test(early.stderr), early.stderr);
  await tenant.page.getByRole("button", { name: "Sign the agreement" }).click();
  await tenant.page.getByRole("dialog", { name: "Sign this agreement?" }).getByRole("button", { name: "Sign" }).click();
  await landlord.run("agreement", "sign");
  const [landlordId] = await landlord.run("whoami");
  for (const signer of [tenantDevice, landlordId.fingerprint]) {
    await mediator.hears("a signature", (l) => l.event === "agreement_signed" && l.member === signer && l.agreement === proposed.proposed);
  }
  await mediator.run("agreement", "countersign");

  // The copy downloaded from the page is the CLI party's own copy, byte for
  // byte, in both formats, and `caucus agreement verify` accepts it.
  await tenant.page.getByRole("button", { name: "Download the signed agreement" }).waitFor({ timeout: 20_000 });
  const markdown = await downloaded(tenant, "Download the signed agreement");
  assert.equal(markdown, (await landlord.run("agreement", "export"))[0].export);
  assert.equal(await downloaded(tenant, "Download as JSON"), (await landlord.run("agreement", "export", "--format", "json"))[0].export);
  const copy = path.join(mediator.state, "tenant-copy.md");
  writeFileSync(copy, markdown);
  const [verified] = await landlord.run("agreement", "verify", copy);
  assert.equal(verified.valid, true);
  assert.equal(verified.report.agreement, proposed.proposed);
  assert.equal(verified.report.title, title);
  assert.equal(verified.report.terms, terms);
  assert.deepEqual(verified.report.signers.map(([name, party]) => [name, party]).sort(), [
    ["Ana Ruiz", "Tenants"],
    ["Ms Mediator", null],
    ["Owen Pike", "Landlord"],
  ]);
  // A changed word in the page's copy is refused.
  const tampered = path.join(mediator.state, "tampered.md");
  writeFileSync(tampered, markdown.replace("1 March", "1 May"));
  assert.ok(!(await landlord.tryRun("agreement", "verify", tampered)).ok, "a changed date");

  // The CLI closes; the page says the mediation has ended.
  const closed = await mediator.run("close");
  assert.ok(closed.some((l) => l.closed === created.session));
  await tenant.page.getByRole("heading", { name: "This mediation has ended" }).waitFor({ timeout: 20_000 });
  await tenant.page.getByText("It keeps the signed agreement.").waitFor();
  await landlord.hears("the close", (l) => l.event === "closed");
  assert.ok(landlord.heard.lines.some((l) => l.event === "system" && l.kind === "phase_changed" && l.detail === "closed"));

  for (const cli of [mediator, landlord]) {
    assert.deepEqual(cli.heard.lines.filter((l) => l.event === "warning" || l.notJson), [], `${cli.name}: no warnings`);
  }
  assert.deepEqual(tenant.errors, []);
  await tenant.context.close();
});

test("a mediator in the browser runs a session with a party on the command line and one in another browser", { timeout: 180_000 }, async (t) => {
  t.after(stopChildren);
  const mediator = await person(browser, relay, "Dr Okafor", LAPTOP);
  const tenant = await person(browser, relay, "Ana Ruiz");
  const landlord = new Cli("Owen Pike");
  const m = mediator.page;

  await createMediation(mediator, relay, "Dr Okafor", [
    ["Tenants", ["Ana Ruiz"]],
    ["Landlord", ["Owen Pike"]],
  ]);
  await joinAndAdmit(mediator, tenant, await inviteLink(mediator, "Ana Ruiz"));

  // The CLI party joins with the link copied from the mediator's screen, and waits.
  const link = await inviteLink(mediator, "Owen Pike");
  assert.match(link, new RegExp(`^${relay.url}#caucus:invite:v1:`));
  const joining = landlord.spawn("join", link, "--wait", "90");
  const asked = await joining.line("Owen Pike's join request", (l) => l.waiting !== undefined);
  landlord.session = asked.waiting;
  const ownCode = await textOf(m.locator(".own-code .code"));
  assert.equal(asked.mediator_safety_code, ownCode, "the CLI shows the code the browser mediator reads");
  const waiting = m.getByRole("region", { name: "Waiting to be let in" });
  await waiting.locator("li", { hasText: "Owen Pike" }).getByText(asked.safety_code).waitFor();
  await m.getByRole("button", { name: "Let Owen Pike in" }).click();
  assert.equal((await joining.exited).code, 0, joining.stderr);
  assert.ok(joining.lines.some((l) => l.joined === asked.waiting));
  await landlord.follow();
  const [me] = await landlord.run("whoami");
  await m.getByRole("region", { name: "Landlord", exact: true }).getByText("Owen Pike · online").waitFor();

  // A mediator-only message from the command line: on the mediator's screen, not shareable yet.
  const words = "I can have the boiler replaced in two weeks if they let the engineer in.";
  const [sent] = await landlord.run("send", words);
  await goTo(mediator, "Landlord (private)");
  const said = m.locator(".message", { hasText: words });
  await said.waitFor();
  assert.match(await textOf(said.locator(".meta")), /Owen Pike\s*for the mediator only/);
  const refused = said.getByRole("button", { name: /Cannot share: for the mediator only/ });
  await refused.waitFor();
  assert.equal(await refused.getAttribute("aria-disabled"), "true");
  await refused.click({ force: true });
  assert.equal(await m.getByRole("dialog").count(), 0, "no share dialog opens without consent");

  // He consents on the command line; the browser mediator shares it word for word.
  const [consented] = await landlord.run("consent", "--message", sent.message);
  assert.equal(consented.consented, sent.message);
  await said.getByText("The author let the mediator share this.").waitFor();
  await said.getByRole("button", { name: "Share…" }).click();
  await m.getByRole("radio", { name: "Tenants' private room" }).check();
  await m.getByRole("button", { name: "Continue" }).click();
  await m.getByRole("dialog", { name: "Share this with Tenants' private room?" }).getByRole("button", { name: "Share with Tenants' private room" }).click();
  await tenant.page.getByText(words).waitFor();
  await tenant.page.getByText("The mediator brings this from Landlord · their words, unchanged").waitFor();
  await said.getByText("Shared with Tenants, word for word.").waitFor();

  // The receipt in his `listen`.
  const shared = await landlord.hears("the share receipt", (l) => l.event === "shared" && l.message === sent.message);
  assert.equal(shared.mode, "verbatim");
  assert.equal(shared.text, words);
  assert.equal(shared.destination_label, "Tenants (private)");
  assert.equal(shared.room_label, "Landlord (private)");

  // His side's gates, agreed on the command line, ticked on the mediator's screen.
  const gates = m.getByRole("list", { name: "Landlord: agreement to the process" });
  await gates.getByText("— not yet agreed to continue").waitFor();
  await gates.getByText("— not yet agreed to a joint meeting").waitFor();
  await landlord.run("agree", "continue");
  await gates.getByText("✓ agreed to continue").waitFor();
  await landlord.run("agree", "joint-meeting");
  await gates.getByText("✓ agreed to a joint meeting").waitFor();
  const tenantGates = m.getByRole("list", { name: "Tenants: agreement to the process" });
  await tenantGates.getByText("— not yet agreed to continue").waitFor();
  await landlord.hears("his own agreement", (l) => l.event === "agreed" && l.member === me.fingerprint && l.step === "joint_meeting");

  // The mediator closes in the browser; the command line hears it.
  await m.getByRole("button", { name: "Close the session" }).click();
  await m.getByRole("dialog", { name: "Close this mediation for everyone?" }).getByRole("button", { name: "Close the session" }).click();
  await m.getByRole("heading", { name: "The relay's signed statement" }).waitFor({ timeout: 20_000 });
  await landlord.hears("the close", (l) => l.event === "closed");
  assert.ok(landlord.heard.lines.some((l) => l.event === "system" && l.kind === "phase_changed" && l.detail === "closed"));
  await tenant.page.getByRole("heading", { name: "This mediation has ended" }).waitFor({ timeout: 20_000 });

  assert.deepEqual(landlord.heard.lines.filter((l) => l.event === "warning" || l.notJson), [], "no warnings");
  assert.deepEqual([...mediator.errors, ...tenant.errors], []);
  await mediator.context.close();
  await tenant.context.close();
});

// The relay's address written with a trailing slash (which the CLI accepts)
// names the same relay: its page takes the invitation and the device joins.
test(
  "an invitation made with `--server ws://HOST:PORT/` opens on that relay's page",
  { timeout: 60_000 },
  async (t) => {
    t.after(stopChildren);
    const mediator = new Cli("Ms Mediator");
    const server = `${relay.ws}/`;
    const [created] = await mediator.run("session", "create", "--server", server, "--name", "Ms Mediator", "--party", "A", "--party", "B");
    mediator.session = created.session;
    const [invite] = await mediator.run("invite", "--server", server, "--party", "A", "--name", "Ana Ruiz");
    const guest = await person(browser, relay, "Ana Ruiz");
    t.after(() => guest.context.close());
    await visit(guest.page, `${relay.url}#${invite.link}`);
    await guest.page.getByRole("heading", { name: "You are invited to a mediation" }).waitFor();
    assert.equal(await guest.page.getByText("This invitation is for another Caucus service").count(), 0);
    await guest.page.getByRole("button", { name: "Join the mediation" }).click();
    await guest.page.getByRole("heading", { name: "Waiting for the mediator to let you in" }).waitFor();
  },
);
