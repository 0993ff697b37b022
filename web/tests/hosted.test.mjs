// The built client is a plain static folder that any web server can host,
// pointing at any relay: here web/dist/ served by a bare node HTTP server on
// another port (another origin), with `?relay=` naming the relay. A mediator
// starts a mediation there; the invitation links made on that page point at
// that page and keep its `?relay=`; a party opens one and is let in; they
// exchange a message through the relay.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { LAPTOP, createMediation, inviteLink, joinAndAdmit, launch, person, say, startRelay, web } from "./support.mjs";

const dist = path.join(web, "dist");
const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
};

let relay, host, hostUrl, browser;
before(async () => {
  relay = await startRelay({ args: ["--no-web"] });
  // The organisation's own web server: the folder as it is, and its own
  // policy, which lets the page reach the relay's origin.
  host = createServer((req, res) => {
    const file = new URL(req.url, "http://x").pathname;
    const full = path.join(dist, file === "/" ? "index.html" : path.normalize(file));
    if (!full.startsWith(dist + path.sep)) return res.writeHead(403).end();
    try {
      const body = readFileSync(full);
      res.writeHead(200, {
        "content-type": TYPES[path.extname(full)] ?? "application/octet-stream",
        "content-security-policy": `default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self' ${relay.ws}`,
      });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => host.listen(0, "127.0.0.1", r));
  hostUrl = `http://127.0.0.1:${host.address().port}/?relay=${encodeURIComponent(relay.ws)}`;
  browser = await launch();
});
after(async () => {
  await browser?.close();
  host?.close();
  await relay?.stop();
  relay?.remove();
});

test("the built folder hosted by another web server runs a mediation through the relay named by ?relay=", { timeout: 180_000 }, async () => {
  const mediator = await person(browser, relay, "Ms Mediator", LAPTOP);
  const party = await person(browser, relay, "Ms Claimant");
  // The relay itself serves no client here.
  assert.equal((await fetch(relay.url)).status, 404);
  await createMediation(mediator, { url: hostUrl }, "Ms Mediator", [
    ["Claimant", ["Ms Claimant"]],
    ["Respondent", ["Mr Respondent"]],
  ]);
  const link = await inviteLink(mediator, "Ms Claimant");
  assert.ok(link.startsWith(`${hostUrl}#caucus:invite:v1:`), link);
  await joinAndAdmit(mediator, party, link);
  await say(party, "Hosted elsewhere, carried by the relay.");
  await mediator.page.getByRole("navigation", { name: "Rooms" }).getByRole("button", { name: "Claimant (private)" }).click();
  await mediator.page.getByText("Hosted elsewhere, carried by the relay.").waitFor();
  assert.deepEqual([...mediator.errors, ...party.errors], []);
});
