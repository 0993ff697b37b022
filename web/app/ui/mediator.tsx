// The mediator's screen (laptop): the people and their gates at a glance,
// the waiting room, the invites; every room, moved between (which is where
// the parties see the mediator); the stage of the mediation, the joint and
// side rooms, offers, the agreement, and closing with the relay's signed
// statement of what it erased.

import { useEffect, useState } from "preact/hooks";
import type { Driver } from "../driver.ts";
import { type PartyView, type Said, type View, PHASES, capital, isSaid, nameOf, phaseName, possessive, roomName, statusName } from "../model.ts";
import { AgreementPanel } from "./agreement.tsx";
import { CarryDialog } from "./carry.tsx";
import { Code, Confirm, CopyButton, ErrorLine, QrCode, useAction } from "./common.tsx";
import { MakeOffer, OffersLog } from "./offers.tsx";
import { Connection, Warnings } from "./party.tsx";
import { Room } from "./room.tsx";

export function MediatorScreen({ driver, view }: { driver: Driver; view: View }) {
  const events = driver.events(view.session);
  const news = driver.newsOf(view.session);
  const online = new Set(news.presence?.online ?? []);
  const rooms = view.rooms ?? [];
  const [roomId, setRoomId] = useState<string>();
  const room = rooms.find((r) => r.id === roomId);
  const [carrying, setCarrying] = useState<Said>();
  const [run, , error] = useAction();
  const lead = view.me.role === "mediator";
  // Where the mediator is: said to the relay on each move, and again after
  // each reconnection (the relay keeps it in memory only). A move lost with
  // the connection is not an error to show: it is said again.
  const tell = (id: string | undefined) =>
    run(() =>
      driver.run((d, now) => d.setLocation(view.session, id ?? "", false, now)).catch((e: unknown) => {
        if (driver.connected) throw e;
      }),
    );
  const goTo = (id: string | undefined) => {
    setRoomId(id);
    tell(id);
  };
  useEffect(() => {
    if (driver.connected && roomId !== undefined) tell(roomId);
  }, [driver.connected]);
  const here = news.presence?.mediator;
  // What the mediator has read of each room: what came since shows on its tab.
  const counts = new Map<string, number>();
  for (const e of events) if (isSaid(e)) counts.set(e.room, (counts.get(e.room) ?? 0) + 1);
  const said = (id: string) => counts.get(id) ?? 0;
  const [read, setRead] = useState(() => new Map(rooms.map((r) => [r.id, said(r.id)])));
  if (room && read.get(room.id) !== said(room.id)) setRead(new Map(read).set(room.id, said(room.id)));
  const fresh = (id: string) => said(id) - (read.get(id) ?? 0);
  return (
    <main id="main" class="mediator">
      <header class="session-head">
        <h1>
          Mediation <span class="phase">· {phaseName(view.phase)}</span>
        </h1>
        <p class="you">
          You are {view.me.name ?? "the mediator"}
          {lead ? ", the lead mediator" : ", co-mediator"}.{" "}
          {here && here.where === "in" ? `The parties see you in ${roomName(view, here.room)}.` : "The parties see you as away."}
        </p>
        <p class="own-code">
          Your safety code, to read to each person you let in: <Code code={view.me.safetyCode} />
        </p>
        <Connection driver={driver} />
        <Warnings driver={driver} session={view.session} />
        <ErrorLine error={error} />
      </header>
      {lead && <WaitingRoom driver={driver} view={view} />}
      <div class="columns">
        <aside aria-labelledby="people-title">
          <h2 id="people-title">People</h2>
          {(view.parties ?? []).map((p) => (
            <Party key={p.id} driver={driver} view={view} party={p} online={online} statuses={news.statuses} lead={lead} />
          ))}
          {lead && <Invites driver={driver} view={view} />}
          {lead && <Process driver={driver} view={view} />}
        </aside>
        <div class="work">
          <nav class="tabs" aria-label="Rooms">
            {rooms.map((r) => (
              <button key={r.id} type="button" aria-pressed={r.id === room?.id} onClick={() => goTo(r.id)}>
                {r.kind === "private" ? `${r.label} (private)` : r.kind === "joint" ? `Joint room${r.open ? "" : " (closed)"}` : capital(roomName(view, r.id))}
                {r.id !== room?.id && fresh(r.id) > 0 && <span class="new"> · {fresh(r.id)} new</span>}
              </button>
            ))}
            <button type="button" aria-pressed={room === undefined} onClick={() => goTo(undefined)}>
              Step away
            </button>
          </nav>
          {room ? (
            <>
              <Room driver={driver} view={view} room={room} events={events} onCarry={setCarrying} />
              {room.kind === "side" && lead && (
                <Confirm label="Close this side room" title={`Close ${roomName(view, room.id)}?`} confirm="Close it" onConfirm={() => driver.run((d, now) => d.closeSideRoom(view.session, room.id, now)).then(() => setRoomId(undefined))}>
                  <p>Its members will no longer read or write in it.</p>
                </Confirm>
              )}
              {room.kind === "private" && room.party && (
                <details>
                  <summary>Record an offer for {room.label}</summary>
                  <MakeOffer driver={driver} view={view} forParty={room.party} />
                </details>
              )}
            </>
          ) : (
            <p class="hint">Choose a room to go there. The parties in it see that you are with them; the others see that you are with another party.</p>
          )}
          <section aria-labelledby="offers-title">
            <h2 id="offers-title">Offers</h2>
            <OffersLog view={view} events={events} />
          </section>
          <AgreementPanel driver={driver} view={view} events={events} />
          {lead && <CloseSession driver={driver} view={view} />}
        </div>
      </div>
      {carrying && <CarryDialog driver={driver} view={view} event={carrying} onClose={() => setCarrying(undefined)} />}
    </main>
  );
}

function Party(props: { driver: Driver; view: View; party: PartyView; online: Set<string>; statuses: Map<string, string>; lead: boolean }) {
  const { driver, view, party, online, statuses, lead } = props;
  return (
    <section class="party-card" aria-label={party.label}>
      <h3>
        {party.label} {party.withdrawn && <span class="badge">withdrawn</span>}
      </h3>
      <ul class="gates" aria-label={`${party.label}: agreement to the process`}>
        <li>{party.agreed.continue ? "✓ agreed to continue" : "— not yet agreed to continue"}</li>
        <li>{party.agreed.joint_meeting ? "✓ agreed to a joint meeting" : "— not yet agreed to a joint meeting"}</li>
      </ul>
      <ul class="members">
        {party.members.length === 0 && <li class="hint">No one has joined yet.</li>}
        {party.members.map((m) => (
          <li key={m.device}>
            <span>
              <span class={`dot ${online.has(m.device) ? "online" : ""}`} aria-hidden="true" />
              {nameOf(view, m.device)} · {online.has(m.device) ? "online" : "offline"} · {statusName(statuses.get(m.device))}
            </span>
            {lead && (
              <Confirm label={`Remove ${nameOf(view, m.device)}`} title={`Remove ${nameOf(view, m.device)}?`} confirm="Remove" danger onConfirm={() => driver.run((d, now) => d.removeMember(view.session, m.device, now))}>
                <p>They will no longer read or write anything in this mediation.</p>
              </Confirm>
            )}
          </li>
        ))}
      </ul>
      {lead && party.withdrawn && (
        <Confirm label={`Take ${party.label} back`} title={`Take ${party.label} back into the mediation?`} confirm="Take them back" onConfirm={() => driver.run((d, now) => d.readmit(view.session, party.id, now))}>
          <p>They will read and write again from now on.</p>
        </Confirm>
      )}
    </section>
  );
}

function WaitingRoom({ driver, view }: { driver: Driver; view: View }) {
  const waiting = view.waiting ?? [];
  const [run, busy, error] = useAction();
  if (waiting.length === 0) return null;
  const partyLabel = (id: string | null) => view.parties?.find((p) => p.id === id)?.label ?? "co-mediator";
  return (
    <section class="waiting" aria-labelledby="waiting-title">
      <h2 id="waiting-title">Waiting to be let in</h2>
      <p>Ask each person to read you their safety code, and let them in only if it matches the one shown here.</p>
      <ul>
        {waiting.map((w) => (
          <li key={w.device}>
            <strong>{w.name}</strong> ({partyLabel(w.party)}) — safety code <Code code={w.safetyCode} />
            <button type="button" class="primary" disabled={busy} onClick={() => run(() => driver.now((d, now) => d.admit(view.session, w.device, now)))}>
              Let {w.name} in
            </button>
            <button type="button" disabled={busy} onClick={() => run(() => driver.run((d, now) => d.decline(view.session, w.device, now)))}>
              Turn away
            </button>
          </li>
        ))}
      </ul>
      <ErrorLine error={error} />
    </section>
  );
}

/**
 * An invitation as a link to this very page (the relay's own, or wherever
 * this client is hosted), the invitation in the fragment, which browsers
 * never send to a server.
 */
function pageLink(link: string): string {
  return `${location.origin}${location.pathname}${location.search}#${link}`;
}

function Invites({ driver, view }: { driver: Driver; view: View }) {
  const [shown, setShown] = useState<string>();
  const [name, setName] = useState("");
  const [party, setParty] = useState(view.parties?.[0]?.id ?? "");
  const [run, busy, error] = useAction();
  const label = (id: string | null) => (id === null ? "co-mediator" : (view.parties?.find((p) => p.id === id)?.label ?? ""));
  return (
    <section aria-labelledby="invites-title">
      <h2 id="invites-title">Invitations</h2>
      <p class="hint">Send each person their own link, privately (by email or message). It works once.</p>
      <ul class="invites">
        {(view.invites ?? []).map((i) => (
          <li key={i.id}>
            <p class="who">
              <strong>{i.name}</strong> ({label(i.party)}) — {i.used ? "joined" : "not used yet"}
            </p>
            {!i.used && (
              <>
                <CopyButton text={pageLink(i.link)} label={`Copy ${possessive(i.name)} link`} />
                <button type="button" aria-expanded={shown === i.id} onClick={() => setShown(shown === i.id ? undefined : i.id)}>
                  QR code
                </button>
                <input class="link" readOnly aria-label={`${possessive(i.name)} invitation link`} value={pageLink(i.link)} onFocus={(e) => (e.target as HTMLInputElement).select()} />
                {shown === i.id && <QrCode text={pageLink(i.link)} label={`QR code of ${possessive(i.name)} invitation link`} />}
              </>
            )}
          </li>
        ))}
      </ul>
      <form
        class="inline"
        onSubmit={(ev) => {
          ev.preventDefault();
          run(async () => {
            await driver.run((d, now) => d.invite(view.session, party, name.trim(), 72, false, now));
            setName("");
          });
        }}
      >
        <label for="invite-name">Invite someone</label>
        <input id="invite-name" value={name} placeholder="Their name" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <label for="invite-party">to</label>
        <select id="invite-party" value={party} onChange={(e) => setParty((e.target as HTMLSelectElement).value)}>
          {(view.parties ?? []).map((p) => (
            <option key={p.id} value={p.id}>
              {p.label}
            </option>
          ))}
          <option value="">join me as co-mediator</option>
        </select>
        <button type="submit" disabled={busy || name.trim() === ""}>
          Make a link
        </button>
      </form>
      <ErrorLine error={error} />
    </section>
  );
}

/** The stage, the joint room, side rooms. */
function Process({ driver, view }: { driver: Driver; view: View }) {
  const [run, busy, error] = useAction();
  const joint = view.rooms?.find((r) => r.kind === "joint");
  const [side, setSide] = useState<string[]>([]);
  const people = (view.parties ?? []).flatMap((p) => p.members.map((m) => ({ ...m, party: p.label })));
  return (
    <section aria-labelledby="process-title">
      <h2 id="process-title">The process</h2>
      <label for="phase">Stage</label>
      <select
        id="phase"
        value={view.phase}
        disabled={busy}
        onChange={(e) => {
          const phase = (e.target as HTMLSelectElement).value;
          run(() => driver.run((d, now) => d.setPhase(view.session, phase, now)));
        }}
      >
        {PHASES.filter(([p]) => p !== "closed").map(([p, words]) => (
          <option key={p} value={p}>
            {words}
          </option>
        ))}
      </select>
      {joint && (
        <button type="button" disabled={busy} onClick={() => run(() => driver.run((d, now) => d.setJointOpen(view.session, !joint.open, now)))}>
          {joint.open ? "Close the joint room" : "Open the joint room"}
        </button>
      )}
      <fieldset>
        <legend>Open a side room with</legend>
        {people.map((p) => (
          <label key={p.device}>
            <input
              type="checkbox"
              checked={side.includes(p.device)}
              onChange={(e) => setSide((e.target as HTMLInputElement).checked ? [...side, p.device] : side.filter((x) => x !== p.device))}
            />{" "}
            {nameOf(view, p.device)} ({p.party})
          </label>
        ))}
        <button
          type="button"
          disabled={busy || side.length === 0}
          onClick={() => run(async () => {
            await driver.run((d, now) => d.openSideRoom(view.session, side, now));
            setSide([]);
          })}
        >
          Open side room
        </button>
      </fieldset>
      <ErrorLine error={error} />
    </section>
  );
}

function CloseSession({ driver, view }: { driver: Driver; view: View }) {
  return (
    <section aria-labelledby="close-title">
      <h2 id="close-title">End the mediation</h2>
      <Confirm
        label="Close the session"
        title="Close this mediation for everyone?"
        confirm="Close the session"
        danger
        onConfirm={() => driver.run((d, now) => d.closeSession(view.session, now))}
      >
        <p>
          Everyone is told it has ended. The relay erases everything it holds of this session and signs a statement saying so;
          every device erases its copy and keeps the signed agreement, if there is one.
        </p>
      </Confirm>
    </section>
  );
}
