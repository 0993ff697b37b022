// What the client machine tells the page, as TypeScript types (the JSON of
// `caucus_client_core::Event` and of `Device.view`), and the few readings
// of it that every screen shares: the words for phases, statuses and where
// the mediator is; who a device is; what of a message was shared.

export type Mode = "verbatim" | "reframed";
export type Sharing = "mediator_only" | "may_share";
export type Step = "continue" | "joint_meeting";
export type Phase = "preparation" | "individual_meetings" | "negotiation" | "agreement" | "closed";
export type Status = "ready" | "needs_mediator" | "on_break";

export interface Amount {
  minor: number;
  currency: string;
  exponent: number;
  text: string;
}

export interface Offer {
  kind: "offer" | "counter_offer";
  amount: Amount | null;
  terms: string;
  conditions: string[];
  responds_to: string | null;
}

export type Whereabouts =
  | { where: "away" }
  | { where: "with_you"; room: string }
  | { where: "elsewhere" }
  | { where: "in"; room: string };

type In = { session: string; room: string };

/** What a person is shown of a document (never its key). */
export interface DocumentInfo {
  title: string;
  name: string;
  media_type: string;
  size: number;
  sha256: string;
}

/** One event of `caucus_client_core::Event`, tagged by `type`. */
export type CaucusEvent =
  | (In & { type: "message"; index: number; sender: string; hash: string; sharing: Sharing; text: string })
  | (In & {
      type: "forwarded";
      index: number;
      mediator: string;
      from_room: string;
      mode: Mode;
      text: string;
      author_consented: boolean;
    })
  | (In & { type: "document"; index: number; sender: string; hash: string; sharing: Sharing; document: DocumentInfo })
  | (In & {
      type: "document_carried";
      index: number;
      mediator: string;
      hash: string;
      from_room: string;
      mode: Mode;
      document: DocumentInfo;
      author_consented: boolean;
    })
  | (In & { type: "shared"; source: string; destination: string; mode: Mode; text: string })
  | (In & { type: "consent"; member: string; message: string })
  | (In & { type: "system"; event: { kind: string; detail?: unknown } })
  | (In & { type: "withdrew"; member: string })
  | (In & { type: "agreed"; member: string; step: Step })
  | (In & {
      type: "agreement_proposed";
      agreement: string;
      title: string;
      terms: string;
      checklist: string[];
      attachments: Attachment[];
    })
  | (In & { type: "agreement_signed"; member: string; agreement: string })
  | (In & { type: "agreement_concluded"; agreement: string })
  | (In & { type: "offer"; index: number; by: string; message: string; offer: Offer })
  | (In & {
      type: "offer_carried";
      index: number;
      mediator: string;
      message: string;
      from_room: string;
      mode: Mode;
      offer: Offer;
    })
  | { type: "roster"; session: string; version: number }
  | { type: "joined"; session: string }
  | { type: "knocking"; session: string; invite: string; member: string; name: string; party: string | null }
  | { type: "admitted"; session: string; invite: string; member: string }
  | { type: "rejected"; session: string; invite: string; reason: string }
  | { type: "waiting"; session: string; mediator_online: boolean }
  | { type: "declined"; session: string }
  | { type: "presence"; session: string; online: string[]; mediator: Whereabouts }
  | { type: "status"; session: string; member: string; status: Status }
  | { type: "closed"; session: string }
  | { type: "warning"; session: string; kind: { kind: "gap" | "verification" | "fork" | "consent" | "connection" | "rollback" }; detail: string };

export type Said = Extract<CaucusEvent, { room: string }>;

/** Whether an event is part of what was said in the session (its history), not news of the moment. */
export function isSaid(event: CaucusEvent): event is Said {
  return "room" in event;
}

export interface Person {
  device: string;
  safetyCode: string;
  name: string | null;
}

export interface PartyView {
  id: string;
  label: string;
  withdrawn: boolean;
  room: string | null;
  agreed: { continue: boolean; joint_meeting: boolean };
  members: Person[];
}

export interface RoomView {
  id: string;
  kind: "private" | "joint" | "side";
  party: string | null;
  label: string | null;
  open: boolean;
  members: string[];
}

export interface InviteView {
  id: string;
  name: string;
  party: string | null;
  used: boolean;
  autoAdmit: boolean;
  link: string;
}

/** A document an agreement attaches: the signatures cover its SHA-256 (base64url). */
export interface Attachment {
  title: string;
  name: string;
  size: number;
  sha256: string;
}

/** A hash in base64url as lowercase hex, as `sha256sum` prints it. */
export function hexOf(base64url: string): string {
  const bytes = atob(base64url.replace(/-/g, "+").replace(/_/g, "/"));
  return Array.from(bytes, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
}

/** The documents this device holds, each by the message that brought it (a document added or carried to a room). */
export function heldDocuments(events: CaucusEvent[]): { message: string; document: DocumentInfo }[] {
  return events.flatMap((e) =>
    e.type === "document" || e.type === "document_carried" ? [{ message: e.hash, document: e.document }] : [],
  );
}

export interface AgreementView {
  verified: boolean;
  error?: string;
  hash: string;
  title: string;
  terms: string;
  checklist: string[];
  attachments: Attachment[];
  signers: { name: string; party: string | null; device: string; safetyCode: string }[];
  markdown: string;
  json: string;
}

export interface StatementView {
  verified: boolean;
  error?: string;
  relay: string;
  session: string;
  closedAt: number;
  erasedAt: number;
  erased: {
    envelopes: number;
    rosters: number;
    keyBundles: number;
    invites: number;
    joinRequests: number;
    documents: number;
    chunks: number;
    bytes: number;
  };
}

/** `Device.view`: a session as the page shows it. */
export interface View {
  session: string;
  membership: "knocking" | "waiting" | "admitted" | "ready" | "closed";
  me: Person & { role?: "mediator" | "co_mediator" | "party_member" | null; party?: string | null };
  mediator?: Person;
  phase?: Phase;
  parties?: PartyView[];
  mediators?: (Person & { role: string })[];
  rooms?: RoomView[];
  waiting?: (Person & { name: string; party: string | null })[];
  invites?: InviteView[];
  agreement?: AgreementView | null;
}

export const PHASES: [Phase, string][] = [
  ["preparation", "Preparation"],
  ["individual_meetings", "Individual meetings"],
  ["negotiation", "Negotiation"],
  ["agreement", "Agreement"],
  ["closed", "Closed"],
];

export function phaseName(phase: Phase | undefined): string {
  return PHASES.find(([p]) => p === phase)?.[1] ?? "";
}

export const STATUSES: [Status, string][] = [
  ["ready", "Ready"],
  ["needs_mediator", "I need the mediator"],
  ["on_break", "On a break"],
];

export function statusName(status: string | undefined): string {
  return STATUSES.find(([s]) => s === status)?.[1] ?? "No status yet";
}

/** A person's name, or their safety code if the roster does not name them. */
export function nameOf(view: View, device: string): string {
  if (device === view.me.device) return view.me.name ?? "You";
  const everyone = [...(view.mediators ?? []), ...(view.parties ?? []).flatMap((p) => p.members)];
  const person = everyone.find((p) => p.device === device);
  return person?.name ?? `someone (${device.slice(0, 8)}…)`;
}

/** A room in words: "Claimant's private room", "the joint room", "a side room with …". */
export function roomName(view: View, room: string | undefined): string {
  const r = view.rooms?.find((x) => x.id === room);
  if (r === undefined) return "a room that has closed";
  if (r.kind === "joint") return "the joint room";
  if (r.kind === "private") {
    return r.party === view.me.party ? "your private room" : `${possessive(r.label ?? "a side")} private room`;
  }
  const others = r.members.filter((m) => m !== view.me.device && !view.mediators?.some((x) => x.device === m));
  return `the side room with ${others.map((m) => nameOf(view, m)).join(", ")}`;
}

/** A phrase as the start of a label: "the side room with …" → "The side room with …". */
export function capital(phrase: string): string {
  return phrase.charAt(0).toUpperCase() + phrase.slice(1);
}

/** "Dr Chen's", "Tenants'". */
export function possessive(name: string): string {
  return name.endsWith("s") ? `${name}'` : `${name}'s`;
}

/** Where the mediator is, in the words a party reads. */
export function whereabouts(view: View, w: Whereabouts | undefined, mediatorOnline: boolean): string {
  if (!mediatorOnline) return "The mediator is not online";
  switch (w?.where) {
    case "with_you":
      return "The mediator is with you";
    case "elsewhere":
      return "The mediator is with another party";
    case "in":
      return `The mediator is in ${roomName(view, w.room)}`;
    default:
      return "The mediator is away";
  }
}

/** An offer in one line, as the protocol's `Offer::summary` writes it. */
export function offerSummary(o: Offer): string {
  const what = [o.amount?.text, o.terms].filter((x) => x).join("; ");
  const conditions = o.conditions.length > 0 ? ` (conditions: ${o.conditions.join("; ")})` : "";
  return `${o.kind === "counter_offer" ? "Counter-offer" : "Offer"}: ${what}${conditions}`;
}

/** What kind of file a media type is, in words: "PDF", "Word document", "picture". */
export function kindOfFile(mediaType: string): string {
  const t = mediaType.toLowerCase();
  if (t === "application/pdf") return "PDF";
  if (t.includes("wordprocessingml") || t === "application/msword" || t.includes("opendocument.text")) return "Word document";
  if (t.includes("spreadsheetml") || t === "application/vnd.ms-excel" || t.includes("opendocument.spreadsheet") || t === "text/csv") return "spreadsheet";
  if (t.includes("presentationml") || t.includes("opendocument.presentation")) return "presentation";
  if (t.startsWith("image/")) return "picture";
  if (t.startsWith("text/")) return "text";
  if (t.startsWith("audio/")) return "sound recording";
  if (t.startsWith("video/")) return "video";
  if (t === "application/zip") return "zip archive";
  return "file";
}

/** A file's name without its extension: a document's title until someone writes another. */
export function titleOf(fileName: string): string {
  const dot = fileName.lastIndexOf(".");
  return dot > 0 ? fileName.slice(0, dot) : fileName;
}

/** The events said in one room. */
export function inRoom(events: CaucusEvent[], room: string): Said[] {
  return events.filter((e): e is Said => isSaid(e) && e.room === room);
}

type Shared = Extract<CaucusEvent, { type: "shared" }>;

/** What the session's record says of its messages: the consents given, and where each was shared and how. */
export interface ShareRecord {
  consented: Set<string>;
  shares: Map<string, Shared[]>;
}

/** Read once per screen, not once per message. */
export function sharingOf(events: CaucusEvent[]): ShareRecord {
  const consented = new Set<string>();
  const shares = new Map<string, Shared[]>();
  for (const e of events) {
    if (e.type === "consent") consented.add(e.message);
    if (e.type === "shared") shares.set(e.source, [...(shares.get(e.source) ?? []), e]);
  }
  return { consented, shares };
}

/** The newest proposed agreement, with who has signed it. */
export function latestDraft(events: CaucusEvent[]) {
  const drafts = events.filter(
    (e): e is Extract<CaucusEvent, { type: "agreement_proposed" }> => e.type === "agreement_proposed",
  );
  const draft = drafts[drafts.length - 1];
  if (draft === undefined) return undefined;
  const signed = new Set(
    events
      .filter((e) => e.type === "agreement_signed" && e.agreement === draft.agreement)
      .map((e) => (e as { member: string }).member),
  );
  return { ...draft, signed };
}

/** A date and time as people read it, in their own time zone. */
export function when(secs: number): string {
  return new Date(secs * 1000).toLocaleString();
}
