import { chromium } from "playwright-core";
const ARGS = ["--no-sandbox","--disable-gpu","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync"];
const base = process.argv[2] ?? "http://127.0.0.1:7310/";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ARGS });
const shot = (p, n) => p.screenshot({ path: `/tmp/dev/${n}.png`, fullPage: true });
async function open(name, viewport) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log("PAGEERROR", name, e.message));
  page.on("console", (c) => c.type() === "error" && console.log("console", name, c.text()));
  return page;
}
const m = await open("mediator", { width: 1280, height: 900 });
await m.goto(base);
await m.waitForSelector("#app[data-ready=true]");
await m.getByRole("link", { name: "Start a new mediation" }).click();
await m.getByLabel("Your name, as the parties will see it").fill("Dr Okafor");
await m.getByLabel("Name of the side").nth(0).fill("Claimant");
await m.getByLabel("Who to invite (one name per line)").nth(0).fill("Ms Claimant");
await m.getByLabel("Name of the side").nth(1).fill("Hospital trust");
await m.getByLabel("Who to invite (one name per line)").nth(1).fill("Ms Trust");
await m.getByRole("button", { name: "Create the mediation" }).click();
await m.getByRole("heading", { name: "Invitations" }).waitFor();
async function join(name) {
  const link = await m.getByLabel(`${name}'s invitation link`).inputValue();
  const p = await open(name, { width: 390, height: 844 });
  await p.goto(link);
  await p.getByRole("button", { name: "Join the mediation" }).click();
  await p.getByRole("heading", { name: "Waiting for the mediator to let you in" }).waitFor();
  await m.getByRole("button", { name: `Let ${name} in` }).click();
  await p.getByRole("button", { name: "Send" }).waitFor({ timeout: 15000 });
  return p;
}
const c = await join("Ms Claimant");
const t = await join("Ms Trust");
// claimant writes a mediator-only message
await c.getByLabel("Write a message").fill("We want an apology and the costs of care.");
await c.getByRole("button", { name: "Send" }).click();
await m.getByRole("button", { name: "Claimant (private)" }).click();
await m.getByText("We want an apology and the costs of care.").waitFor();
const blocked = m.getByRole("button", { name: /Cannot share/ });
console.log("blocked button:", await blocked.count());
await c.getByRole("button", { name: "Let the mediator share this" }).click();
await m.getByRole("button", { name: "Share…" }).waitFor();
await m.getByRole("button", { name: "Share…" }).click();
await m.getByRole("radio", { name: "Hospital trust's private room" }).check();
await m.getByRole("radio", { name: "Reframed in my words" }).check();
await m.getByLabel("Your words").fill("The claimant's family would value an apology, and help with care costs.");
await m.getByRole("button", { name: "Continue" }).click();
await shot(m, "10-carry-confirm");
await m.getByRole("button", { name: "Share with Hospital trust's private room" }).click();
await t.getByText("The claimant's family would value an apology").waitFor();
await c.getByText(/Shared with Hospital trust, reframed as/).waitFor();
await shot(c, "11-claimant-receipt");
// offers
await t.getByText("Make an offer").click();
await t.getByLabel("Amount (optional)").fill("120000");
await t.getByLabel("Terms in words").fill("A written apology from the trust");
await t.getByRole("button", { name: "Send offer to the mediator" }).click();
await m.getByRole("button", { name: "Hospital trust (private)" }).click();
await m.getByRole("button", { name: "Carry this offer…" }).click();
await m.getByRole("radio", { name: "Claimant's private room" }).check();
await m.getByRole("button", { name: "Continue" }).click();
await m.getByRole("button", { name: "Carry with Claimant's private room" }).click();
await c.getByRole("button", { name: "Answer with a counter-offer…" }).click();
await c.getByLabel("Amount (optional)").fill("180000");
await c.getByLabel("Terms in words").fill("A written apology");
await c.getByRole("button", { name: "Send counter-offer" }).click();
await m.getByRole("button", { name: "Claimant (private)" }).click();
await m.getByText(/Counter-offer: GBP 180000.00/).first().waitFor();
await shot(c, "12-claimant-offers");
// gates
for (const p of [c, t]) {
  await p.getByRole("button", { name: "We agree to continue with the mediation" }).click();
  await p.getByRole("button", { name: "We agree to meet the other side in a joint meeting" }).click();
}
await m.getByText("✓ agreed to a joint meeting").nth(1).waitFor();
await m.getByLabel("Stage").selectOption("negotiation");
await m.getByRole("button", { name: "Open the joint room" }).click();
await c.getByRole("button", { name: "Joint room" }).click();
await c.getByLabel("Write a message").fill("Thank you for meeting us.");
await c.getByRole("button", { name: "Send" }).click();
await t.getByRole("button", { name: "Joint room" }).click();
await t.getByText("Thank you for meeting us.").waitFor();
await shot(t, "13-trust-joint");
// agreement
await m.getByLabel("Stage").selectOption("agreement");
await m.getByText("Draft an agreement").click();
await m.getByLabel("Title", { exact: true }).fill("Settlement of the claim");
await m.getByLabel("Terms", { exact: true }).fill("1. The trust apologises in writing.\n2. The trust pays GBP 150000.00.");
await m.getByRole("button", { name: "Propose for signature" }).click();
for (const p of [c, t]) {
  await p.getByRole("button", { name: "Sign the agreement" }).click();
  await p.getByRole("button", { name: "Sign", exact: true }).click();
}
await m.getByText("Ms Trust: signed").waitFor();
await m.getByRole("button", { name: "Countersign and give everyone their copy" }).click();
await c.getByRole("button", { name: "Download the signed agreement" }).waitFor();
await shot(c, "14-claimant-agreement");
const [dl] = await Promise.all([c.waitForEvent("download"), c.getByRole("button", { name: "Download the signed agreement" }).click()]);
await dl.saveAs("/tmp/dev/agreement.md");
// close
await m.getByRole("button", { name: "Close the session" }).click();
await m.getByRole("button", { name: "Close the session" }).nth(1).click();
await m.getByRole("heading", { name: "This mediation has ended" }).waitFor();
await c.getByRole("heading", { name: "This mediation has ended" }).waitFor();
await shot(m, "15-mediator-ended");
await shot(c, "16-claimant-ended");
// verify offline page
await c.goto(base + "#verify");
await c.getByLabel("Agreement file").setInputFiles("/tmp/dev/agreement.md");
await c.getByText("Genuine.").waitFor();
await shot(c, "17-verify");
await browser.close();
console.log("DONE");
