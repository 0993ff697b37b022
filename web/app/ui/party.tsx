// A party member's screen (phone first): where the mediator is and their
// own status at the top; their private room, the joint room when it is open,
// any side room; then offers, the agreement, and their say in the process —
// agreeing to continue and to meet, or withdrawing.

import { useState } from "preact/hooks";
import type { Driver } from "../driver.ts";
import { type CaucusEvent, type View, STATUSES, capital, phaseName, roomName, whereabouts } from "../model.ts";
import { AgreementPanel } from "./agreement.tsx";
import { Confirm, ErrorLine, useAction } from "./common.tsx";
import { MakeOffer, OffersLog } from "./offers.tsx";
import { Room } from "./room.tsx";

export function PartyScreen({ driver, view }: { driver: Driver; view: View }) {
  const events = driver.events(view.session);
  const news = driver.newsOf(view.session);
  const party = view.parties?.find((p) => p.id === view.me.party);
  const withdrawn = party?.withdrawn ?? false;
  // A side that has withdrawn keeps only what it said to the mediator.
  const order = { private: 0, joint: 1, side: 2 };
  const rooms = (view.rooms ?? [])
    .filter((r) => r.members.includes(view.me.device) && (r.kind === "private" || (!withdrawn && (r.kind !== "joint" || r.open))))
    .sort((a, b) => order[a.kind] - order[b.kind]);
  const mine = rooms.find((r) => r.kind === "private");
  const [roomId, setRoomId] = useState<string>();
  const room = rooms.find((r) => r.id === roomId) ?? mine ?? rooms[0];
  const [answering, setAnswering] = useState<Extract<CaucusEvent, { type: "offer_carried" }>>();
  const mediatorOnline = view.mediator !== undefined && (news.presence?.online.includes(view.mediator.device) ?? false);
  return (
    <main id="main" class="party">
      <header class="session-head">
        <h1>
          {party?.label ?? "Your side"} <span class="phase">· {phaseName(view.phase)}</span>
        </h1>
        <p class="you">
          You are {view.me.name ?? "a member"}
          {view.mediator?.name ? `; your mediator is ${view.mediator.name}` : ""}.
        </p>
        <p class={`where ${mediatorOnline ? "online" : "offline"}`} role="status" aria-live="polite">
          {whereabouts(view, news.presence?.mediator, mediatorOnline)}
        </p>
        {!withdrawn && <StatusPicker driver={driver} view={view} current={news.statuses.get(view.me.device)} />}
        <Connection driver={driver} />
        <Warnings driver={driver} session={view.session} />
      </header>
      {withdrawn && (
        <p class="notice-box" role="status">
          Your side has withdrawn from the mediation. You can read what was said before, but you can no longer write.
        </p>
      )}
      {rooms.length > 1 && (
        <nav class="tabs" aria-label="Rooms">
          {rooms.map((r) => (
            <button key={r.id} type="button" aria-pressed={r.id === room?.id} onClick={() => setRoomId(r.id)}>
              {r.kind === "private" ? "Private room" : r.kind === "joint" ? "Joint room" : capital(roomName(view, r.id))}
            </button>
          ))}
        </nav>
      )}
      {room && <Room driver={driver} view={view} room={room} events={events} onAnswer={withdrawn ? undefined : setAnswering} />}
      <section aria-labelledby="offers-title">
        <h2 id="offers-title">Offers</h2>
        <OffersLog view={view} events={events} />
        {!withdrawn && (
          <details open={answering !== undefined}>
            <summary>{answering ? "Answer with a counter-offer" : "Make an offer"}</summary>
            <MakeOffer key={answering?.message ?? "new"} driver={driver} view={view} answering={answering} onDone={() => setAnswering(undefined)} />
          </details>
        )}
      </section>
      <AgreementPanel driver={driver} view={view} events={events} />
      {!withdrawn && <YourSay driver={driver} view={view} />}
    </main>
  );
}

function StatusPicker({ driver, view, current }: { driver: Driver; view: View; current: string | undefined }) {
  const [run, busy, error] = useAction();
  const [chosen, setChosen] = useState(current);
  return (
    <div class="status">
      <label for="my-status">Tell the mediator</label>
      <select
        id="my-status"
        value={chosen ?? ""}
        disabled={busy}
        onChange={(e) => {
          const status = (e.target as HTMLSelectElement).value;
          setChosen(status);
          run(() => driver.run((d, now) => d.setStatus(view.session, status, now)));
        }}
      >
        <option value="" disabled>
          Choose…
        </option>
        {STATUSES.map(([s, words]) => (
          <option key={s} value={s}>
            {words}
          </option>
        ))}
      </select>
      <ErrorLine error={error} />
    </div>
  );
}

/**
 * What this device refused to show (a message that did not verify, a gap or
 * a replay the relay may be behind), said plainly; the details for whoever
 * looks into it.
 */
export function Warnings({ driver, session }: { driver: Driver; session: string }) {
  // A step lost with the connection is not a message that failed a check:
  // "Reconnecting…" says that, and the machine tries again.
  const all = driver.newsOf(session).warnings;
  const warnings = all.filter((w) => w.kind.kind !== "connection" && w.kind.kind !== "consent");
  const unconsented = all.filter((w) => w.kind.kind === "consent");
  return (
    <>
      {unconsented.length > 0 && (
        <p class="warnings" role="alert">
          The mediator shared something you wrote <strong>for the mediator only</strong>, and you had not agreed to it being
          shared. You can raise this with the mediator.
        </p>
      )}
      {warnings.length > 0 && <Refused warnings={warnings} />}
    </>
  );
}

function Refused({ warnings }: { warnings: { detail: string }[] }) {
  return (
    <details class="warnings">
      <summary role="alert">
        {warnings.length === 1 ? "Something" : `${warnings.length} things`} this device received did not check out, and{" "}
        {warnings.length === 1 ? "is" : "are"} not shown. If this keeps happening, tell the mediator.
      </summary>
      <ul>
        {warnings.map((w, i) => (
          <li key={i}>{w.detail}</li>
        ))}
      </ul>
    </details>
  );
}

/** Whether this page is connected to the relay, in words. */
export function Connection({ driver }: { driver: Driver }) {
  if (driver.failure) return <p class="error" role="alert">{driver.failure.message}</p>;
  if (driver.connected) return null;
  return (
    <p class="offline" role="status">
      Reconnecting… What you write is kept and sent once you are back.
    </p>
  );
}

/** Agreeing to go on and to meet; withdrawing. */
function YourSay({ driver, view }: { driver: Driver; view: View }) {
  const agreed = view.parties?.find((p) => p.id === view.me.party)?.agreed ?? { continue: false, joint_meeting: false };
  const [run, busy, error] = useAction();
  const ask = (step: "continue" | "joint_meeting") => run(() => driver.run((d, now) => d.agree(view.session, step, now)));
  return (
    <section aria-labelledby="say-title">
      <h2 id="say-title">Your say in the process</h2>
      <p class="hint">Mediation goes on only while every side agrees. You may withdraw at any time.</p>
      <ul class="gates">
        <li>
          {agreed.continue ? (
            "Your side has agreed to continue with the mediation."
          ) : (
            <button type="button" disabled={busy} onClick={() => ask("continue")}>
              We agree to continue with the mediation
            </button>
          )}
        </li>
        <li>
          {agreed.joint_meeting ? (
            "Your side has agreed to meet the other side in the joint room."
          ) : (
            <button type="button" disabled={busy} onClick={() => ask("joint_meeting")}>
              We agree to meet the other side in a joint meeting
            </button>
          )}
        </li>
      </ul>
      <ErrorLine error={error} />
      <Confirm
        label="Withdraw from the mediation"
        title="Withdraw your side from the mediation?"
        confirm="Withdraw"
        danger
        onConfirm={() => driver.run((d, now) => d.withdraw(view.session, now))}
      >
        <p>
          The mediator and the other side will be told that your side has withdrawn. You will no longer be able to write or
          to read new messages. The mediator may invite you back later.
        </p>
      </Confirm>
    </section>
  );
}
