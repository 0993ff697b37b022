// One room's conversation, as a party member or the mediator reads it, with
// the box to write in. What of a party's message was shared, and how, is
// shown beside it; the mediator's "Share…" and "Carry…" open the dialogs in
// ./carry.tsx.

import { useEffect, useRef, useState } from "preact/hooks";
import type { Driver } from "../driver.ts";
import {
  type CaucusEvent,
  type Said,
  type View,
  type RoomView,
  inRoom,
  nameOf,
  offerSummary,
  phaseName,
  roomName,
  sharingOf,
  type ShareRecord,
  capital,
} from "../model.ts";
import { ErrorLine, useAction } from "./common.tsx";
import { AddDocument, DocumentDetails, UploadingEntry } from "./documents.tsx";

export interface RoomProps {
  driver: Driver;
  view: View;
  room: RoomView;
  events: CaucusEvent[];
  /** (Mediator) carry a message or an offer elsewhere. */
  onCarry?: (event: Said) => void;
  /** (Party) answer a carried offer. */
  onAnswer?: (offer: Extract<CaucusEvent, { type: "offer_carried" }>) => void;
}

export function Room({ driver, view, room, events, onCarry, onAnswer }: RoomProps) {
  const said = inRoom(events, room.id).filter((e) => e.type !== "shared" && e.type !== "consent");
  const sharing = sharingOf(events);
  const sending = [...driver.sending.values()].filter((s) => s.session === view.session && s.room === room.id);
  const uploading = [...driver.uploading.values()].filter((u) => u.session === view.session && u.room === room.id);
  const end = useRef<HTMLLIElement>(null);
  useEffect(() => end.current?.scrollIntoView({ block: "nearest" }), [said.length, sending.length, uploading.length]);
  const title = roomName(view, room.id);
  return (
    <section class="room" aria-label={title}>
      <h2>{capital(title)}</h2>
      <p class="hint">{roomHint(view, room)}</p>
      <ol class="messages" aria-live="polite" aria-label={`Messages in ${title}`}>
        {said.map((e) => (
          <Entry key={`${e.type}-${"index" in e ? e.index : ""}-${keyOf(e)}`} {...{ driver, view, event: e, sharing, onCarry, onAnswer }} />
        ))}
        {sending.map((s) => (
          <li key={`sending-${s.op}`} class="message mine sending">
            <p class="meta">You · sending…</p>
            <p class="text">{s.text}</p>
          </li>
        ))}
        {uploading.map((u) => (
          <UploadingEntry key={`uploading-${u.op}`} driver={driver} upload={u} />
        ))}
        <li ref={end} class="end" aria-hidden="true" />
      </ol>
      {canWrite(view, room) ? (
        <>
          <Composer driver={driver} view={view} room={room} />
          <AddDocument driver={driver} view={view} room={room} />
        </>
      ) : (
        <p class="hint">{cannotWrite(view, room)}</p>
      )}
    </section>
  );
}

function keyOf(e: Said): string {
  if ("hash" in e) return e.hash;
  if ("message" in e) return String(e.message);
  if ("agreement" in e) return `${e.agreement}-${"member" in e ? e.member : ""}`;
  if ("member" in e) return e.member;
  return JSON.stringify(e).slice(0, 40);
}

function roomHint(view: View, room: RoomView): string {
  const mediator = view.me.role === "mediator" || view.me.role === "co_mediator";
  switch (room.kind) {
    case "private":
      return mediator
        ? `Only ${room.label} and the mediators read this room. Nothing here reaches anyone else unless you carry it.`
        : "Only your side and the mediator read this room. Nothing you write here reaches the other side unless the mediator carries it, and only with your consent if you mark it for the mediator only.";
    case "joint":
      return "Everyone in the mediation reads the joint room.";
    default:
      return "Only the people named and the mediator read this side room.";
  }
}

function canWrite(view: View, room: RoomView): boolean {
  if (view.membership !== "ready" && view.membership !== "admitted") return false;
  if (!room.members.includes(view.me.device)) return false;
  if (room.kind === "joint" && !room.open) return view.me.role === "mediator" || view.me.role === "co_mediator";
  const party = view.parties?.find((p) => p.id === view.me.party);
  return !party?.withdrawn;
}

function cannotWrite(view: View, room: RoomView): string {
  const party = view.parties?.find((p) => p.id === view.me.party);
  if (party?.withdrawn) return "Your side has withdrawn from the mediation: you can no longer write here.";
  if (room.kind === "joint" && !room.open) return "The joint room opens when every side has agreed to meet and the mediator opens it.";
  return "You cannot write in this room.";
}

function Entry(props: {
  driver: Driver;
  view: View;
  event: Said;
  sharing: ShareRecord;
  onCarry?: (event: Said) => void;
  onAnswer?: (offer: Extract<CaucusEvent, { type: "offer_carried" }>) => void;
}) {
  const { driver, view, event: e, sharing, onCarry, onAnswer } = props;
  const mediator = view.me.role === "mediator" || view.me.role === "co_mediator";
  switch (e.type) {
    case "message": {
      const mine = e.sender === view.me.device;
      return (
        <li class={`message${mine ? " mine" : ""}`}>
          <p class="meta">
            {mine ? "You" : nameOf(view, e.sender)}
            {roomOf(view, e.room)?.kind === "private" && (
              <span class={`label ${e.sharing}`}>{e.sharing === "may_share" ? "may be shared" : "for the mediator only"}</span>
            )}
          </p>
          <p class="text">{e.text}</p>
          <ShareNotes view={view} sharing={sharing} message={e.hash} mine={mine} />
          {mine && !mediator && e.sharing === "mediator_only" && !sharing.consented.has(e.hash) && roomOf(view, e.room)?.kind === "private" && (
            <ConsentButton driver={driver} view={view} message={e.hash} />
          )}
          {mediator && onCarry && roomOf(view, e.room)?.kind === "private" && !isMediator(view, e.sender) && (
            <CarryButton event={e} sharing={sharing} onCarry={onCarry} />
          )}
        </li>
      );
    }
    case "document": {
      const mine = e.sender === view.me.device;
      const inPrivate = roomOf(view, e.room)?.kind === "private";
      return (
        <li class={`message document${mine ? " mine" : ""}`}>
          <p class="meta">
            {mine ? "You" : nameOf(view, e.sender)} added a document
            {inPrivate && <span class={`label ${e.sharing}`}>{e.sharing === "may_share" ? "may be shared" : "for the mediator only"}</span>}
          </p>
          <DocumentDetails driver={driver} view={view} message={e.hash} document={e.document} />
          <ShareNotes view={view} sharing={sharing} message={e.hash} mine={mine} document />
          {mine && !mediator && e.sharing === "mediator_only" && !sharing.consented.has(e.hash) && inPrivate && (
            <ConsentButton driver={driver} view={view} message={e.hash} />
          )}
          {mediator && onCarry && inPrivate && !isMediator(view, e.sender) && <CarryButton event={e} sharing={sharing} onCarry={onCarry} />}
        </li>
      );
    }
    case "document_carried":
      return (
        <li class="message document carried">
          <p class="meta">
            {mediator ? `You shared this here from ${roomName(view, e.from_room)}` : `Shared by the mediator from ${sideOf(view, e.from_room)}`} ·{" "}
            {e.mode === "verbatim" ? "the document as it was added" : "the mediator's own version"}
          </p>
          <DocumentDetails driver={driver} view={view} message={e.hash} document={e.document} />
        </li>
      );
    case "forwarded":
      return (
        <li class="message carried">
          <p class="meta">
            {mediator
              ? `You carried this here from ${roomName(view, e.from_room)}`
              : `The mediator brings this from ${sideOf(view, e.from_room)}`}{" "}
            · {e.mode === "verbatim" ? "their words, unchanged" : "in the mediator's words"}
          </p>
          <p class="text">{e.text}</p>
        </li>
      );
    case "offer":
      return (
        <li class="message offer">
          <p class="meta">
            {e.by === view.me.device ? "You" : nameOf(view, e.by)} {e.offer.kind === "counter_offer" ? "made a counter-offer" : "made an offer"}
          </p>
          <p class="text">{offerSummary(e.offer)}</p>
          <ShareNotes view={view} sharing={sharing} message={e.message} mine={false} />
          {mediator && onCarry && <button type="button" onClick={() => onCarry(e)}>Carry this offer…</button>}
        </li>
      );
    case "offer_carried":
      return (
        <li class="message offer carried">
          <p class="meta">
            {mediator ? `You carried an offer here from ${roomName(view, e.from_room)}` : `The mediator brings an offer from ${sideOf(view, e.from_room)}`} ·{" "}
            {e.mode === "verbatim" ? "as made" : "restated by the mediator"}
          </p>
          <p class="text">{offerSummary(e.offer)}</p>
          {!mediator && onAnswer && (
            <button type="button" onClick={() => onAnswer(e)}>
              Answer with a counter-offer…
            </button>
          )}
        </li>
      );
    case "system":
      return <li class="notice">{systemWords(view, e.event)}</li>;
    case "withdrew":
      return <li class="notice">{nameOf(view, e.member)} gave notice that their side withdraws from the mediation.</li>;
    case "agreed":
      return (
        <li class="notice">
          {e.member === view.me.device ? "You" : nameOf(view, e.member)} agreed{" "}
          {e.step === "continue" ? "to continue with the mediation" : "to meet the other side in the joint room"}.
        </li>
      );
    case "agreement_proposed":
      return <li class="notice">The mediator proposed an agreement to sign: “{e.title}”.</li>;
    case "agreement_signed":
      return <li class="notice">{e.member === view.me.device ? "You" : nameOf(view, e.member)} signed the agreement.</li>;
    case "agreement_concluded":
      return <li class="notice">The agreement is signed by everyone and countersigned by the mediator.</li>;
    default:
      return null;
  }
}

function isMediator(view: View, device: string): boolean {
  return view.mediators?.some((m) => m.device === device) ?? false;
}

function roomOf(view: View, room: string): RoomView | undefined {
  return view.rooms?.find((r) => r.id === room);
}

/** Where carried content came from, as a party may be told: "the other side", or the joint room. */
function sideOf(view: View, room: string): string {
  const r = roomOf(view, room);
  if (r?.kind === "joint") return "the joint room";
  if (r?.kind === "private" && r.label) return r.label;
  return "the other side";
}

function systemWords(view: View, event: { kind: string; detail?: unknown }): string {
  switch (event.kind) {
    case "member_admitted":
      return `${nameOf(view, String(event.detail))} joined the mediation.`;
    case "member_removed":
      return `${nameOf(view, String(event.detail))} was removed from the mediation.`;
    case "joint_opened":
      return "The mediator opened the joint room.";
    case "joint_closed":
      return "The mediator closed the joint room.";
    case "phase_changed":
      return `The mediation moved to a new stage: ${phaseName(event.detail as never)}.`;
    case "party_withdrew":
      return "A side has withdrawn from the mediation.";
    case "party_rejoined":
      return "A side that had withdrawn has come back to the mediation.";
    default:
      return "The mediator announced a change.";
  }
}

/** Beside a message: where the mediator shared it, and how. */
function ShareNotes(props: { view: View; sharing: ShareRecord; message: string; mine: boolean; document?: boolean }) {
  const { view, sharing, message, mine, document } = props;
  const shares = sharing.shares.get(message) ?? [];
  const consent = sharing.consented.has(message);
  return (
    <>
      {consent && <p class="share">{mine ? "You let the mediator share this." : "The author let the mediator share this."}</p>}
      {shares.map((s) => (
        <p class="share" key={`${s.destination}-${s.text}`}>
          Shared with {shareTarget(view, s.destination)}
          {document
            ? s.mode === "verbatim"
              ? ", as it is."
              : <>, as the mediator's own version: “{s.text}”</>
            : s.mode === "verbatim"
              ? ", word for word."
              : <>, reframed as: “{s.text}”</>}
        </p>
      ))}
    </>
  );
}

function shareTarget(view: View, room: string): string {
  const r = roomOf(view, room);
  if (r?.kind === "private") return r.label ?? "another side";
  return roomName(view, room);
}

function ConsentButton({ driver, view, message }: { driver: Driver; view: View; message: string }) {
  const [run, busy, error] = useAction();
  return (
    <>
      <button type="button" disabled={busy} onClick={() => run(() => driver.run((d, now) => d.consent(view.session, message, now)))}>
        Let the mediator share this
      </button>
      <ErrorLine error={error} />
    </>
  );
}

function CarryButton({ event, sharing, onCarry }: { event: Extract<Said, { type: "message" | "document" }>; sharing: ShareRecord; onCarry: (e: Said) => void }) {
  const blocked = event.sharing === "mediator_only" && !sharing.consented.has(event.hash);
  return (
    <button type="button" aria-disabled={blocked} class={blocked ? "blocked" : undefined} onClick={() => !blocked && onCarry(event)} title={blocked ? undefined : "Share this in another room"}>
      {blocked ? "Cannot share: for the mediator only, and the author has not consented" : "Share…"}
    </button>
  );
}

function Composer({ driver, view, room }: { driver: Driver; view: View; room: RoomView }) {
  const [text, setText] = useState("");
  const [mayShare, setMayShare] = useState(false);
  const [error, setError] = useState<string>();
  const party = view.me.role === "party_member" && room.kind === "private";
  const id = `compose-${room.id}`;
  return (
    <form
      class="composer"
      onSubmit={(ev) => {
        ev.preventDefault();
        const words = text.trim();
        if (words === "") return;
        setError(undefined);
        // The box is free at once: the message shows as sending until the
        // relay has it, however long the connection takes to come back.
        // If it is refused, its words come back to the box.
        const sent = driver.send(view.session, room.id, words, party ? mayShare : false);
        setText("");
        setMayShare(false);
        sent.catch((e: unknown) => {
          setError(`Not sent: ${e instanceof Error ? e.message : String(e)}`);
          setText((now) => (now.trim() === "" ? words : now));
        });
      }}
    >
      <label for={id}>Write a message</label>
      <textarea id={id} rows={3} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
      {party && (
        <fieldset class="sharing">
          <legend>Who may read it</legend>
          <label>
            <input type="radio" name={`sharing-${room.id}`} checked={!mayShare} onChange={() => setMayShare(false)} /> For the mediator only
          </label>
          <label>
            <input type="radio" name={`sharing-${room.id}`} checked={mayShare} onChange={() => setMayShare(true)} /> The mediator may share it with the other side
          </label>
        </fieldset>
      )}
      <ErrorLine error={error} />
      <button type="submit" class="primary" disabled={text.trim() === ""}>
        Send
      </button>
    </form>
  );
}
