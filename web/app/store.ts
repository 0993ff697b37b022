// The browser's saved state: what the client machine hands out in
// `takeChanges`, kept in IndexedDB, every value sealed with AES-GCM under a
// non-extractable Web Crypto key kept in the same database. The browser's
// counterpart of client-lib/src/store.rs; what it protects against, and what
// not, is in docs/client.md ("Saved state").
//
//   object store  key                          value
//   key           "state"                      the CryptoKey (AES-GCM 256, non-extractable)
//   identity      "device"                     sealed: the device's secret keys
//   snapshots     session                      { records, sealed: the snapshot }
//   log           [session, position]          sealed: one log record
//   kept          [session, what]              sealed: the agreement or the deletion statement
//
// sealed = iv (12 random bytes) || AES-GCM ciphertext and tag. The
// additional data names what the value is — its kind, its session, a log
// record's position, and for a snapshot the number of log records written
// before it — so no value opens in another's place, and records cut from the
// end of a log are noticed.
//
// One batch of changes is one readwrite transaction with strict durability:
// `save` resolves once it has committed, and the driver sends nothing before.
// IndexedDB's raw API, not a wrapper such as `idb`: the few requests here
// need no more than the two helpers below.

const DATABASE_VERSION = 1;
const STORES = ["key", "identity", "snapshots", "log", "kept"];
const IV_BYTES = 12;

/** One batch of `Device.takeChanges()`. */
export interface Changes {
  identity?: Uint8Array<ArrayBuffer>;
  sessions: {
    session: string;
    erase: boolean;
    appended: Uint8Array<ArrayBuffer>[];
    snapshot?: Uint8Array<ArrayBuffer>;
    kept: { what: string; bytes: Uint8Array<ArrayBuffer> }[];
  }[];
}

/** What was saved. */
export interface Saved {
  identity?: Uint8Array;
  sessions: { session: string; snapshot: Uint8Array; log: Uint8Array[] }[];
}

/** What a session left behind when it was erased: its agreement, the relay's statement. */
export interface KeptRecord {
  session: string;
  what: "agreement" | "deletion";
  bytes: Uint8Array;
}

type What = [kind: string, session?: string, position?: number];

/** The result of an IndexedDB request. */
function result<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Resolves when `tx` has committed; rejects if it fails. */
function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("saving this device's state was aborted"));
  });
}

/** The additional data sealed with a value: what it is. */
function about(what: What): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify(["caucus web state v1", ...what]));
}

function describe([kind, session, position]: What): string {
  if (kind === "identity") return "the device key";
  if (kind === "snapshot") return `the snapshot of session ${session}`;
  if (kind === "log record") return `record ${position} of the log of session ${session}`;
  return `the ${kind} of session ${session}`;
}

/** Every key of `session`'s log, in order. */
function logOf(session: string): IDBKeyRange {
  return IDBKeyRange.bound([session, 0], [session, Infinity]);
}

/** The state key, made on first use. */
async function stateKey(db: IDBDatabase): Promise<CryptoKey> {
  const held: CryptoKey | undefined = await result(db.transaction("key").objectStore("key").get("state"));
  if (held !== undefined) return held;
  const fresh = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
  const tx = db.transaction("key", "readwrite", { durability: "strict" });
  const done = committed(tx);
  const keys = tx.objectStore("key");
  // Another page of this origin may have made one meanwhile: the first stays.
  const key: CryptoKey = (await result(keys.get("state"))) ?? fresh;
  if (key === fresh) keys.put(fresh, "state");
  await done;
  return key;
}

export class Store {
  /** Open (creating) the database `name`. */
  static async open(name: string): Promise<Store> {
    const request = indexedDB.open(name, DATABASE_VERSION);
    request.onupgradeneeded = () => {
      for (const store of STORES) request.result.createObjectStore(store);
    };
    const db = await result(request);
    return new Store(db, await stateKey(db));
  }

  /** The number of records in each session's log: where the next is put. */
  private readonly records = new Map<string, number>();

  constructor(
    private readonly db: IDBDatabase,
    private readonly key: CryptoKey,
  ) {}

  private async seal(what: What, bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: about(what) },
      this.key,
      bytes,
    );
    const out = new Uint8Array(IV_BYTES + sealed.byteLength);
    out.set(iv);
    out.set(new Uint8Array(sealed), IV_BYTES);
    return out;
  }

  private async unseal(what: What, value: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    try {
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: value.subarray(0, IV_BYTES), additionalData: about(what) },
        this.key,
        value.subarray(IV_BYTES),
      );
      return new Uint8Array(plain);
    } catch {
      throw new Error(`${describe(what)} does not open: it was altered, or is another's`);
    }
  }

  /**
   * What was saved: `{ identity?: Uint8Array, sessions: [{ session,
   * snapshot: Uint8Array, log: Uint8Array[] }] }`, each log in the order it
   * was appended. A value that does not open, or a log with a record
   * missing, is an error.
   */
  async load(): Promise<Saved> {
    const tx = this.db.transaction(["identity", "snapshots", "log"]);
    const done = committed(tx);
    const [identity, sessions, snapshots, logKeys, logValues] = await Promise.all([
      result(tx.objectStore("identity").get("device")),
      result(tx.objectStore("snapshots").getAllKeys()),
      result(tx.objectStore("snapshots").getAll()),
      result(tx.objectStore("log").getAllKeys()),
      result(tx.objectStore("log").getAll()),
    ]);
    await done;
    const logs = new Map<string, Uint8Array<ArrayBuffer>[]>();
    (logKeys as [string, number][]).forEach(([session, position], i) => {
      const log = logs.get(session) ?? [];
      if (position !== log.length) {
        throw new Error(`the log of session ${session} is missing record ${log.length}`);
      }
      log.push(logValues[i]);
      logs.set(session, log);
    });
    const saved: Saved = {
      identity: identity === undefined ? undefined : await this.unseal(["identity"], identity),
      sessions: [],
    };
    for (const [i, session] of (sessions as string[]).entries()) {
      const { records, sealed } = snapshots[i];
      const log = logs.get(session) ?? [];
      if (log.length < records) {
        throw new Error(`the log of session ${session} has fewer records than its snapshot counts: some were removed`);
      }
      saved.sessions.push({
        session,
        snapshot: await this.unseal(["snapshot", session, records], sealed),
        log: await Promise.all(log.map((value: Uint8Array<ArrayBuffer>, n: number) => this.unseal(["log record", session, n], value))),
      });
    }
    for (const [session, log] of logs) this.records.set(session, log.length);
    return saved;
  }

  /** What erased sessions left: each agreement and deletion statement kept. */
  async kept(): Promise<KeptRecord[]> {
    const tx = this.db.transaction("kept");
    const done = committed(tx);
    const [keys, values] = await Promise.all([
      result(tx.objectStore("kept").getAllKeys()),
      result(tx.objectStore("kept").getAll()),
    ]);
    await done;
    return Promise.all(
      (keys as [string, "agreement" | "deletion"][]).map(async ([session, what], i) => ({
        session,
        what,
        bytes: await this.unseal([what, session], values[i]),
      })),
    );
  }

  /**
   * Save one batch of `Device.takeChanges()` in one transaction; resolves
   * once it has committed. The plaintext handed in is wiped.
   */
  async save(changes: Changes): Promise<void> {
    // Seal first: a transaction commits as soon as it has nothing to do, so
    // it cannot wait on Web Crypto.
    const puts: [string, IDBValidKey, Promise<unknown>][] = [];
    const erased: string[] = [];
    const records = new Map<string, number>();
    if (changes.identity !== undefined) {
      puts.push(["identity", "device", this.seal(["identity"], changes.identity)]);
    }
    for (const { session, erase, appended, snapshot, kept } of changes.sessions) {
      if (erase) erased.push(session);
      let n = erase ? 0 : (this.records.get(session) ?? 0);
      for (const record of appended) {
        puts.push(["log", [session, n], this.seal(["log record", session, n], record)]);
        n += 1;
      }
      if (snapshot !== undefined) {
        const sealed = this.seal(["snapshot", session, n], snapshot);
        puts.push(["snapshots", session, sealed.then((s) => ({ records: n, sealed: s }))]);
      }
      for (const { what, bytes } of kept) {
        puts.push(["kept", [session, what], this.seal([what, session], bytes)]);
      }
      records.set(session, n);
    }
    const values = await Promise.all(puts.map(([, , value]) => value));
    wipe(changes);

    const tx = this.db.transaction(STORES, "readwrite", { durability: "strict" });
    const done = committed(tx);
    for (const session of erased) {
      tx.objectStore("snapshots").delete(session);
      tx.objectStore("log").delete(logOf(session));
    }
    puts.forEach(([store, key], i) => tx.objectStore(store).put(values[i], key));
    await done;
    for (const [session, n] of records) this.records.set(session, n);
  }
}

/** Overwrite the plaintext of a batch of changes, once it is sealed. */
function wipe({ identity, sessions }: Changes): void {
  identity?.fill(0);
  for (const { appended, snapshot, kept } of sessions) {
    for (const record of appended) record.fill(0);
    snapshot?.fill(0);
    for (const { bytes } of kept) bytes.fill(0);
  }
}
