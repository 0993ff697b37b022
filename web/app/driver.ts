// The browser's driver of the client machine (`caucus-web`'s `Device`): it
// only moves bytes, as the native driver does with tokio. Frames go over the
// browser's WebSocket; changes go into IndexedDB (./store.ts), and nothing is
// sent before they are there; events and outcomes are handed to the page.
// Every decision is the machine's.

import { Device, DocumentHasher, checkDocumentSize } from "../pkg/caucus_web.js";
import { Store, type KeptRecord } from "./store.ts";
import { type CaucusEvent, isSaid } from "./model.ts";

const SUBPROTOCOL = "caucus.v1";

/** A message handed to the machine whose outcome has not come back: shown as *sending*. */
export interface Sending {
  op: number;
  session: string;
  room: string;
  text: string;
  mayShare: boolean;
}

/** A document on its way to the relay (its outcome not back yet): shown as *sending* with its progress. */
export interface Uploading {
  op: number;
  session: string;
  /** The room it is added to or carried to. */
  room: string;
  title: string;
  name: string;
  size: number;
  sha256: string;
}

/** A document coming from the relay: its opened chunks, kept aside until the machine has checked the whole file. */
export interface Downloading {
  op: number;
  session: string;
  message: string;
  parts: Uint8Array[];
}

/** A transfer in progress, as `Device.transfers` gives it. */
interface TransferView {
  id: number;
  session: string;
  kind: "upload" | "download";
  done: number;
  total: number;
}

/** A transfer ended because the person stopped it: nothing to warn them of. */
export class Stopped extends Error {
  constructor() {
    super("stopped");
  }
}

/** How much of a file is read and hashed at a time. */
const SLICE = 1 << 20;

/**
 * The form `Device.addDocument` takes for `file`, called `title`. A file
 * too large is refused first, with the machine's sentence, before any of
 * it is read; then its SHA-256 is computed by the machine's own hasher, a
 * slice at a time.
 */
export async function documentForm(file: File, title: string): Promise<string> {
  checkDocumentSize(file.name, file.size);
  const hasher = new DocumentHasher();
  for (let start = 0; start < file.size; start += SLICE) {
    hasher.update(new Uint8Array(await file.slice(start, start + SLICE).arrayBuffer()));
  }
  return JSON.stringify({ title, name: file.name, mediaType: file.type, size: file.size, sha256: hasher.finish() });
}

/** What a session has heard that is not part of its record. */
export interface News {
  presence?: Extract<CaucusEvent, { type: "presence" }>;
  /** (In the waiting room) whether a mediator is online to let this device in. */
  mediatorOnline?: boolean;
  statuses: Map<string, string>;
  warnings: Extract<CaucusEvent, { type: "warning" }>[];
  rejected: Extract<CaucusEvent, { type: "rejected" }>[];
  declined: boolean;
}

interface Waiter {
  resolve: (outcome: any) => void;
  reject: (error: Error) => void;
}

export class Driver {
  /**
   * The device kept in this browser's database `name` (made, and saved, on
   * first use), with every session it holds, connected to `relay`. The
   * page must have initialised the WebAssembly module.
   */
  static async open(relay: string, name = "caucus"): Promise<Driver> {
    const store = await Store.open(name);
    const saved = await store.load();
    let device: Device;
    if (saved.identity === undefined) {
      device = Device.create(relay);
      // Its keys, before anything else: the relay never learns a device
      // this browser has not kept.
      await store.save(device.takeChanges());
    } else {
      device = Device.restore(relay, saved.identity);
      saved.identity.fill(0);
    }
    for (const { snapshot, log } of saved.sessions) {
      device.restoreSession(snapshot, log);
      snapshot.fill(0);
      for (const record of log) record.fill(0);
    }
    return new Driver(device, relay, store, await store.kept());
  }

  private ws!: WebSocket;
  private passing = false;
  private failed: Error | undefined;
  private readonly waiters = new Map<number, Waiter>();
  private readonly watchers: ((event: CaucusEvent) => boolean)[] = [];
  private readonly listeners = new Set<() => void>();
  /** Each session's record: its saved history, then what was said since. */
  private readonly logs = new Map<string, CaucusEvent[]>();
  /** Each session's news of the moment: presence, statuses, warnings, the end. */
  private readonly news = new Map<string, News>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private backoff = 100;
  private stopped = false;
  /** Whether the websocket is open. */
  connected = false;
  /** Messages on their way (their outcome not back yet). */
  readonly sending = new Map<number, Sending>();
  /** Documents on their way (their outcome not back yet). */
  readonly uploading = new Map<number, Uploading>();
  /** Documents being downloaded. */
  readonly downloading = new Map<number, Downloading>();
  /** The furthest each transfer has got (see `progress`). */
  private readonly furthest = new Map<number, { done: number; total: number }>();
  /** Transfers the person stopped. */
  private readonly stopping = new Set<number>();
  /** The file each upload reads from. */
  private readonly files = new Map<number, File>();

  constructor(
    readonly device: Device,
    readonly relay: string,
    private readonly store: Store,
    /** What erased sessions left behind: agreements, deletion statements. */
    public kept: KeptRecord[],
  ) {
    this.recordAll();
    this.connect();
  }

  private connect(): void {
    const ws = new WebSocket(this.relay, SUBPROTOCOL);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 100;
      this.connected = true;
      this.device.connected(Date.now());
      this.flush();
    };
    ws.onmessage = (message) => {
      this.device.handleFrame(String(message.data), Date.now());
      this.flush();
    };
    ws.onclose = () => {
      this.connected = false;
      this.device.disconnected(Date.now());
      this.flush();
      if (!this.stopped) {
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 5000);
      }
    };
  }

  /** Run a pass, unless one is under way: that one sees this input too. */
  private flush(): void {
    if (this.passing || this.failed) return;
    this.pass().catch((e: Error) => this.fail(e));
  }

  /**
   * Save the changes (one transaction, committed), then send, then hand
   * events and outcomes on. A pass waits only on a save, inside the loop, and
   * takes the changes again after it: what arrived meanwhile is saved before
   * anything is sent, and nothing is sent before the save it follows.
   */
  private async pass(): Promise<void> {
    this.passing = true;
    try {
      for (;;) {
        const changes = this.device.takeChanges();
        if (changes !== undefined) {
          await this.store.save(changes);
          if (changes.sessions.some((s: { kept: unknown[] }) => s.kept.length > 0)) {
            this.kept = await this.store.kept();
          }
          continue;
        }
        // A frame taken while the socket is closing would be lost: leave it
        // with the machine, which sends again after the reconnect.
        if (this.ws.readyState === WebSocket.OPEN) {
          const frame = this.device.pollTransmit();
          if (frame !== undefined) {
            this.ws.send(frame);
            continue;
          }
        }
        // Handing out a download's chunks makes room for more requests.
        if (!this.moveBytes()) break;
      }
      this.deliver();
    } finally {
      this.passing = false;
    }
    this.changed();
  }

  private deliver(): void {
    for (let text = this.device.pollEvent(); text !== undefined; text = this.device.pollEvent()) {
      const event = JSON.parse(text) as CaucusEvent;
      if (isSaid(event)) this.logs.get(event.session)?.push(event);
      else this.noted(event);
      this.watchers.splice(0, this.watchers.length, ...this.watchers.filter((w) => !w(event)));
    }
    for (let text = this.device.pollDone(); text !== undefined; text = this.device.pollDone()) {
      const done = JSON.parse(text);
      this.sending.delete(done.op);
      this.uploading.delete(done.op);
      this.files.delete(done.op);
      this.furthest.delete(done.op);
      const download = this.downloading.get(done.op);
      this.downloading.delete(done.op);
      const waiter = this.waiters.get(done.op);
      this.waiters.delete(done.op);
      const stopped = this.stopping.delete(done.op);
      if (waiter) {
        if ("error" in done) waiter.reject(stopped ? new Stopped() : new Error(done.error));
        else waiter.resolve(download ? download.parts : done.ok);
      }
      // A download that failed leaves nothing behind.
      if (download && "error" in done) for (const part of download.parts) part.fill(0);
    }
    this.recordAll();
    clearTimeout(this.timer);
    const at = this.device.pollTimeout();
    if (at !== undefined) {
      this.timer = setTimeout(() => {
        this.device.handleTimeout(Date.now());
        this.flush();
      }, Math.max(0, at - Date.now()));
    }
  }

  /** Saving failed: stop, as the native driver does, and say why to whoever waits. */
  private fail(error: Error): void {
    this.failed = new Error(`saving this device's state failed: ${error.message}`);
    this.stop();
    for (const waiter of this.waiters.values()) waiter.reject(this.failed);
    this.waiters.clear();
    this.changed();
  }

  /** Why the driver stopped, if it did. */
  get failure(): Error | undefined {
    return this.failed;
  }

  /** Ask the machine (`ask(device, now)` returns an operation id) and wait for the outcome. */
  run<T = any>(ask: (device: Device, now: number) => number): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    let op: number;
    try {
      op = ask(this.device, Date.now());
    } catch (e) {
      return Promise.reject(e);
    }
    const outcome = new Promise<T>((resolve, reject) => this.waiters.set(op, { resolve, reject }));
    this.flush();
    return outcome;
  }

  /** Do something the machine answers at once (no operation), then save and send. */
  now(act: (device: Device, now: number) => void): void {
    act(this.device, Date.now());
    this.flush();
  }

  /** Send text, shown as *sending* until the relay has stored it. */
  send(session: string, room: string, text: string, mayShare: boolean): Promise<unknown> {
    return this.run((d, now) => {
      const op = d.sendText(session, room, text, mayShare, now);
      this.sending.set(op, { op, session, room, text, mayShare });
      return op;
    });
  }

  /**
   * The files' bytes the machine asks for (read as they come, each given
   * back when read), and the opened chunks of downloads, set aside.
   * Whether a chunk was handed out (which may let the machine ask for more).
   */
  private moveBytes(): boolean {
    for (let text = this.device.pollRead(); text !== undefined; text = this.device.pollRead()) {
      const { transfer, index, start, end } = JSON.parse(text) as { transfer: number; index: number; start: number; end: number };
      const file = this.files.get(transfer);
      if (file === undefined) {
        this.device.cancelTransfer(transfer);
        continue;
      }
      file
        .slice(start, end)
        .arrayBuffer()
        .then(
          (bytes) => this.device.provideChunk(transfer, index, new Uint8Array(bytes), Date.now()),
          // The file can no longer be read (moved, deleted): the upload stops.
          () => this.device.cancelTransfer(transfer),
        )
        .finally(() => this.flush());
    }
    let moved = false;
    for (let chunk = this.device.pollChunk(); chunk !== undefined; chunk = this.device.pollChunk()) {
      const { transfer, bytes } = chunk as { transfer: number; bytes: Uint8Array };
      this.downloading.get(transfer)?.parts.push(bytes);
      moved = true;
    }
    return moved;
  }

  /**
   * Add `file` to a room as a document called `title`, shown as *sending*
   * with its progress until the relay has it all and the document is
   * posted. A file too large is refused before anything is read or sent.
   */
  async addDocument(session: string, room: string, file: File, title: string, mayShare: boolean): Promise<unknown> {
    const form = await documentForm(file, title);
    return this.run((d, now) => {
      const op = d.addDocument(session, room, form, mayShare, now);
      this.upload(op, session, room, file, form);
      return op;
    });
  }

  /**
   * (Mediator) carry a document to `destination`: as it is, or, with
   * `own`, as the mediator's own version (`file`, called `title`),
   * uploaded first.
   */
  async carryDocument(session: string, message: string, destination: string, own?: { file: File; title: string }): Promise<unknown> {
    const form = own ? await documentForm(own.file, own.title) : "";
    return this.run((d, now) => {
      const op = d.carryDocument(session, message, destination, form, now);
      if (own) this.upload(op, session, destination, own.file, form);
      return op;
    });
  }

  private upload(op: number, session: string, room: string, file: File, form: string): void {
    const { title, name, size, sha256 } = JSON.parse(form) as Uploading;
    this.files.set(op, file);
    this.uploading.set(op, { op, session, room, title, name, size, sha256 });
  }

  /**
   * Download the document `message` names: its bytes, once every chunk
   * opened and the whole file is the one the document names; refused,
   * saying why, otherwise.
   */
  download(session: string, message: string): Promise<Uint8Array[]> {
    return this.run((d, now) => {
      const op = d.download(session, message, now);
      this.downloading.set(op, { op, session, message, parts: [] });
      return op;
    });
  }

  /** Stop the transfer `op`: it ends with `Stopped`; a stopped upload is forgotten. */
  stopTransfer(op: number): void {
    this.stopping.add(op);
    this.now((d) => d.cancelTransfer(op));
  }

  /**
   * How far the transfer `op` has got, in bytes of its file. While the
   * connection is down the machine counts nothing as moving; the page keeps
   * showing the furthest it got, which is where it goes on from.
   */
  progress(op: number): { done: number; total: number } | undefined {
    const now = (JSON.parse(this.device.transfers()) as TransferView[]).find((t) => t.id === op);
    const furthest = this.furthest.get(op);
    const done = Math.max(now?.done ?? 0, furthest?.done ?? 0);
    const total = now?.total ?? furthest?.total;
    if (total === undefined) return undefined;
    this.furthest.set(op, { done, total });
    return { done, total };
  }

  private noted(event: CaucusEvent): void {
    const news = this.newsOf(event.session);
    switch (event.type) {
      case "presence":
        news.presence = event;
        break;
      case "status":
        news.statuses.set(event.member, event.status);
        break;
      case "warning":
        news.warnings.push(event);
        break;
      case "waiting":
        news.mediatorOnline = event.mediator_online;
        break;
      case "declined":
        news.declined = true;
        break;
      case "rejected":
        news.rejected.push(event);
        break;
      default:
        break;
    }
  }

  /** What `session` has heard that is not part of its record. */
  newsOf(session: string): News {
    let news = this.news.get(session);
    if (news === undefined) {
      news = { statuses: new Map(), warnings: [], declined: false, rejected: [] };
      this.news.set(session, news);
    }
    return news;
  }

  /** The events of `session` so far, in order (history first, then what came since). */
  events(session: string): CaucusEvent[] {
    return this.logs.get(session) ?? (JSON.parse(this.device.history(session)) as CaucusEvent[]);
  }

  /**
   * Start the record of every session that has none from its history. Only
   * when the machine has handed out everything it holds (at the start, and
   * at the end of a pass): in the middle of a pass the history already holds
   * messages whose events are still to come, which would then be recorded
   * twice.
   */
  private recordAll(): void {
    for (const session of this.device.sessions) {
      if (!this.logs.has(session)) this.logs.set(session, JSON.parse(this.device.history(session)) as CaucusEvent[]);
    }
  }

  /**
   * The first event for which `matches` holds: one already said in a session
   * (its record), or one to come.
   */
  event(matches: (event: CaucusEvent) => boolean): Promise<CaucusEvent> {
    for (const session of this.device.sessions) {
      const seen = this.events(session).find(matches);
      if (seen) return Promise.resolve(seen);
    }
    return new Promise((resolve) =>
      this.watchers.push((event) => (matches(event) ? (resolve(event), true) : false)),
    );
  }

  /** Erase this device's copy of a session; what it keeps is saved. */
  erase(session: string): void {
    this.device.erase(session);
    this.logs.delete(session);
    this.flush();
  }

  /** Call `listener` after every change; returns how to stop. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws.close();
  }
}
