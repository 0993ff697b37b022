// The browser's driver of the client machine (`caucus-web`'s `Device`):
// it only moves bytes, as the native driver does with tokio. Frames go
// over the browser's WebSocket; changes go into IndexedDB (./store.js), and
// nothing is sent before they are there; events and outcomes are handed to
// the page. Every decision is the machine's.

import { Device } from "../pkg/caucus_web.js";
import { Store } from "./store.js";

const SUBPROTOCOL = "caucus.v1";

export class Driver {
  /**
   * The device kept in this browser's database `name` (made, and saved, on
   * first use), with every session it holds, connected to `relay`. The
   * page must have initialised the WebAssembly module.
   */
  static async open(relay, name = "caucus") {
    const store = await Store.open(name);
    const saved = await store.load();
    let device;
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
    return new Driver(device, relay, store);
  }

  /**
   * @param {Device} device
   * @param {Store} store
   */
  constructor(device, relay, store) {
    this.device = device;
    this.relay = relay;
    this.store = store;
    this.passing = false;
    this.failed = undefined;
    this.waiters = new Map();
    this.events = [];
    this.watchers = [];
    this.timer = undefined;
    this.backoff = 100;
    this.stopped = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.relay, SUBPROTOCOL);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 100;
      this.device.connected(Date.now());
      this.flush();
    };
    ws.onmessage = (message) => {
      this.device.handleFrame(message.data, Date.now());
      this.flush();
    };
    ws.onclose = () => {
      this.device.disconnected(Date.now());
      this.flush();
      if (!this.stopped) {
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 5000);
      }
    };
  }

  /** Run a pass, unless one is under way: that one sees this input too. */
  flush() {
    if (this.passing || this.failed) return;
    this.pass().catch((e) => this.fail(e));
  }

  /**
   * Save the changes (one transaction, committed), then send, then hand
   * events and outcomes on. A pass waits only on a save, inside the loop, and
   * takes the changes again after it: what arrived meanwhile is saved before
   * anything is sent, and nothing is sent before the save it follows.
   */
  async pass() {
    this.passing = true;
    try {
      for (;;) {
        const changes = this.device.takeChanges();
        if (changes !== undefined) {
          await this.store.save(changes);
          continue;
        }
        const frame = this.device.pollTransmit();
        if (frame === undefined) break;
        this.ws.send(frame);
      }
      this.deliver();
    } finally {
      this.passing = false;
    }
  }

  deliver() {
    for (let text = this.device.pollEvent(); text !== undefined; text = this.device.pollEvent()) {
      const event = JSON.parse(text);
      this.events.push(event);
      this.watchers = this.watchers.filter((w) => !w(event));
    }
    for (let text = this.device.pollDone(); text !== undefined; text = this.device.pollDone()) {
      const done = JSON.parse(text);
      const waiter = this.waiters.get(done.op);
      this.waiters.delete(done.op);
      if (waiter) {
        if ("error" in done) waiter.reject(new Error(done.error));
        else waiter.resolve(done.ok);
      }
    }
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
  fail(error) {
    this.failed = new Error(`saving this device's state failed: ${error.message}`);
    this.stop();
    for (const waiter of this.waiters.values()) waiter.reject(this.failed);
    this.waiters.clear();
  }

  /** Ask the machine (`ask(device, now)` returns an operation id) and wait for the outcome. */
  run(ask) {
    if (this.failed) return Promise.reject(this.failed);
    const op = ask(this.device, Date.now());
    const outcome = new Promise((resolve, reject) => this.waiters.set(op, { resolve, reject }));
    this.flush();
    return outcome;
  }

  /** The first event, seen already or to come, for which `matches` holds. */
  event(matches) {
    const seen = this.events.find(matches);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) =>
      this.watchers.push((event) => (matches(event) ? (resolve(event), true) : false)),
    );
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws.close();
  }
}
