// The start page: this browser's mediations, the agreements kept from
// mediations that have ended, starting a new mediation (for a mediator),
// opening an invitation, checking an agreement. And the page a session shows
// once it has ended.

import { useEffect, useState } from "preact/hooks";
import { readKept } from "../../pkg/caucus_web.js";
import type { Driver } from "../driver.ts";
import type { AgreementView, StatementView, View } from "../model.ts";
import { phaseName } from "../model.ts";
import { ErrorLine, go, useAction, viewOf } from "./common.tsx";
import { Concluded } from "./agreement.tsx";

export function Home({ driver }: { driver: Driver }) {
  const sessions = driver.device.sessions.map((s) => viewOf(driver, s)).filter((v): v is View => v !== undefined);
  const ended = [...new Set(driver.kept.map((k) => k.session))].filter((s) => !driver.device.sessions.includes(s));
  const [link, setLink] = useState("");
  return (
    <main id="main">
      <h1>Caucus</h1>
      <p>Private mediation, end-to-end encrypted: only the people a message is meant for can read it.</p>
      {sessions.length > 0 && (
        <section aria-labelledby="yours">
          <h2 id="yours">Your mediations</h2>
          <ul class="sessions">
            {sessions.map((v) => (
              <li key={v.session}>
                <a href={`#session=${v.session}`}>{describe(v)}</a>
              </li>
            ))}
          </ul>
        </section>
      )}
      {ended.length > 0 && (
        <section aria-labelledby="ended">
          <h2 id="ended">Mediations that have ended</h2>
          <ul class="sessions">
            {ended.map((s) => (
              <li key={s}>
                <a href={`#session=${s}`}>{endedTitle(driver, s)}</a>
              </li>
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="invited">
        <h2 id="invited">Join with an invitation</h2>
        <p>Open the link the mediator sent you, or paste it here.</p>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const fragment = link.trim().split("#").pop() ?? "";
            go(fragment);
          }}
        >
          <label for="paste-link">Invitation link</label>
          <input id="paste-link" value={link} autoComplete="off" onInput={(e) => setLink((e.target as HTMLInputElement).value)} />
          <button type="submit" disabled={link.trim() === ""}>
            Open
          </button>
        </form>
      </section>
      <section aria-labelledby="mediate">
        <h2 id="mediate">For mediators</h2>
        <a class="button" href="#new">
          Start a new mediation
        </a>
      </section>
      <p>
        <a href="#verify">Check a signed agreement</a>
      </p>
    </main>
  );
}

function describe(v: View): string {
  const sides = (v.parties ?? []).map((p) => p.label).join(", ");
  if (v.membership === "knocking" || v.membership === "waiting") return "Waiting to be let in";
  const role = v.me.role === "party_member" ? `You are with ${v.parties?.find((p) => p.id === v.me.party)?.label}` : "You mediate";
  return `${role} · ${sides} · ${phaseName(v.phase)}`;
}

function endedTitle(driver: Driver, session: string): string {
  const agreement = driver.kept.find((k) => k.session === session && k.what === "agreement");
  if (agreement) {
    const a = JSON.parse(readKept("agreement", agreement.bytes)) as AgreementView;
    return `Ended with an agreement: ${a.title}`;
  }
  return "Ended";
}

/** A new session: the mediator's name, the sides and who is on each; then one link per person. */
export function NewSession({ driver }: { driver: Driver }) {
  const [name, setName] = useState("");
  const [sides, setSides] = useState([
    { label: "", people: "" },
    { label: "", people: "" },
  ]);
  const [run, busy, error] = useAction();
  const edit = (i: number, field: "label" | "people", value: string) =>
    setSides(sides.map((s, j) => (j === i ? { ...s, [field]: value } : s)));
  return (
    <main id="main">
      <h1>Start a new mediation</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          run(async () => {
            const used = sides.filter((s) => s.label.trim() !== "");
            const created = await driver.run<{ session: string; parties: string[] }>((d, now) =>
              d.createSession(name.trim(), used.map((s) => s.label.trim()), now),
            );
            for (const [i, side] of used.entries()) {
              for (const person of side.people.split("\n").map((p) => p.trim()).filter((p) => p)) {
                await driver.run((d, now) => d.invite(created.session, created.parties[i], person, 72, false, now));
              }
            }
            location.replace(`#session=${created.session}`);
          });
        }}
      >
        <label for="mediator-name">Your name, as the parties will see it</label>
        <input id="mediator-name" value={name} autoComplete="name" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        {sides.map((s, i) => (
          <fieldset key={i}>
            <legend>Side {i + 1}</legend>
            <label for={`side-${i}`}>Name of the side</label>
            <input id={`side-${i}`} value={s.label} placeholder={i === 0 ? "Claimant" : "Defendant"} onInput={(e) => edit(i, "label", (e.target as HTMLInputElement).value)} />
            <label for={`people-${i}`}>Who to invite (one name per line)</label>
            <textarea id={`people-${i}`} rows={2} value={s.people} onInput={(e) => edit(i, "people", (e.target as HTMLTextAreaElement).value)} />
          </fieldset>
        ))}
        <button type="button" onClick={() => setSides([...sides, { label: "", people: "" }])}>
          Add another side
        </button>
        <ErrorLine error={error} />
        <button type="submit" class="primary" disabled={busy || name.trim() === "" || sides.filter((s) => s.label.trim()).length < 2}>
          Create the mediation
        </button>
      </form>
      <p class="hint">Each person gets their own invitation link, valid for three days. You let each one in yourself.</p>
    </main>
  );
}

/** A session that has ended: this device erases its copy and keeps the agreement and the relay's statement. */
export function Ended({ driver, session, view }: { driver: Driver; session: string; view: View | undefined }) {
  useEffect(() => {
    if (view?.membership === "closed") driver.erase(session);
  }, [view?.membership]);
  const kept = driver.kept.filter((k) => k.session === session);
  const agreement = kept.find((k) => k.what === "agreement");
  const deletion = kept.find((k) => k.what === "deletion");
  return (
    <main id="main">
      <h1>This mediation has ended</h1>
      <p role="status">This device has erased its copy of the conversation.{agreement ? " It keeps the signed agreement." : ""}</p>
      {agreement && <Concluded agreement={JSON.parse(readKept("agreement", agreement.bytes)) as AgreementView} />}
      {deletion && <Statement statement={JSON.parse(readKept("deletion", deletion.bytes)) as StatementView} />}
      <p>
        <a href="#">Go to the start page</a>
      </p>
    </main>
  );
}

export function Statement({ statement }: { statement: StatementView }) {
  if (!statement.verified) return <p class="error">The relay's statement does not verify: {statement.error}</p>;
  const e = statement.erased;
  return (
    <section aria-labelledby="statement-title" class="statement">
      <h2 id="statement-title">The relay's signed statement</h2>
      <p>
        On {new Date(statement.erasedAt * 1000).toLocaleString()} the relay erased everything it held of this mediation:{" "}
        {e.envelopes} encrypted messages, {e.rosters} membership lists, {e.keyBundles} key bundles, {e.invites} invitations,{" "}
        {e.joinRequests} join requests and {e.documents} documents in {e.chunks} encrypted pieces ({e.bytes} bytes). The statement is signed by the relay's key {statement.relay.slice(0, 12)}…
        and this device has checked the signature.
      </p>
    </section>
  );
}
