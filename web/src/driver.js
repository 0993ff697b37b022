// The browser's driver of the client machine (`caucus-web`'s `Device`):
// it only moves bytes, as the native driver does with tokio. Frames go
// over the browser's WebSocket; changes are taken (and, until the web
// client keeps sessions in IndexedDB, not kept across a reload); events and
// outcomes are handed to the page. Every decision is the machine's.

const SUBPROTOCOL = "caucus.v1";

export class Driver {
  /** @param {import("../pkg/caucus_web.js").Device} device */
  constructor(device, relay) {
    this.device = device;
    this.relay = relay;
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

  /** Save (take) changes, then send, then hand events and outcomes on. */
  flush() {
    for (;;) {
      this.device.takeChanges();
      const frame = this.device.pollTransmit();
      if (frame === undefined) break;
      this.ws.send(frame);
    }
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

  /** Ask the machine (`ask(device, now)` returns an operation id) and wait for the outcome. */
  run(ask) {
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
