"""Load driver for bench/synapse.sh: Caucus's fan-out, on a Synapse homeserver.

Registers rooms x members users (shared-secret registration), makes each room
(created by its first member, the others invited and joined), then drives it
the way caucus-bench drives a relay (bench/src/bin/caucus-bench/drive.rs):

* saturation, closed loop: every member keeps `--window` messages that not
  every other member of its room has received yet, and sends the next one
  when the last delivery of an earlier one arrives; warm-up, then a measured
  interval;
* then (unless --no-half-load) open loop at half the saturated rate, the
  senders evenly paced, latency counted from the time a message was due.

Messages go out with PUT /_matrix/client/v3/rooms/{room}/send/m.room.message
/{txn} (unencrypted m.text, bodies of 200 B - 4 KiB) and come back to every
member, sender included, by long-polling /sync with a filter that keeps only
the m.room.message events of the rooms' timelines (no state, ephemeral
events, account data or presence). A delivery is a message received by a
member other than its sender.

Synapse's CPU (user+sys of its one process, /proc/PID/stat) and the load
generator's own are sampled over the measured interval; the peak RSS is
Synapse's VmHWM. Python 3.11 standard library and aiohttp only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import aiohttp

CLIENT = "/_matrix/client/v3"
WORDS = (
    "the of and to in is that it for on was with as at by this be from or "
    "have an are not but all were when we there can which their said if do "
    "will each about how up out them then she many some so these would other "
    "into has more her two like him see time could no make than first been "
    "its who now people my made over did down only way find use may water "
    "long little very after words called just where most know mediation "
    "session party offer agreement proposal counter draft clause settlement"
).split()


def body(rng: random.Random, size: int) -> str:
    """Plain text of about `size` bytes."""
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


@dataclass
class User:
    index: int
    user_id: str
    token: str
    room: str = ""
    filter_id: str = ""
    since: str = ""
    credits: asyncio.Queue = field(default_factory=asyncio.Queue)
    bodies: list[str] = field(default_factory=list)
    sent: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Table:
    """Messages in flight: key -> [sent_ns, deliveries still due, sender]."""

    def __init__(self, users: list[User]) -> None:
        self.users = users
        self.start = time.monotonic_ns()
        self.flight: dict[str, list[int]] = {}
        self.measuring = False
        self.closed = True
        self.reset()

    def reset(self) -> None:
        self.posted = 0
        self.delivered = 0
        self.samples: list[float] = []
        self.errors = 0
        self.unknown = 0
        self.gaps = 0
        self.syncs = 0

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.start

    def sent(self, key: str, owner: int, recipients: int, at_ns: int) -> None:
        self.flight[key] = [at_ns, recipients, owner]
        if self.measuring:
            self.posted += 1

    def _done(self, key: str) -> None:
        entry = self.flight.pop(key, None)
        if entry is not None and self.closed:
            self.users[entry[2]].credits.put_nowait(None)

    def arrived(self, key: object) -> None:
        entry = self.flight.get(key) if isinstance(key, str) else None
        if entry is None:
            self.unknown += 1
            return
        if self.measuring:
            self.delivered += 1
            self.samples.append((self.now_ns() - entry[0]) / 1e6)
        entry[1] -= 1
        if entry[1] <= 0:
            self._done(key)

    def refused(self, key: str) -> None:
        self.errors += 1
        self._done(key)


class Server:
    """One Synapse homeserver over one pool of keep-alive connections."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, *, auth=None, body=None, params=None):
        async with self.http.request(
            method, self.base + path, headers=auth, json=body, params=params
        ) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
            return json.loads(data)


async def register(srv: Server, secret: str, name: str) -> tuple[str, str]:
    """Shared-secret registration (Synapse admin API): user id and token."""
    nonce = (await srv.call("GET", "/_synapse/admin/v1/register"))["nonce"]
    password = "bench-" + name
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join(x.encode() for x in (nonce, name, password, "notadmin")))
    got = await srv.call(
        "POST",
        "/_synapse/admin/v1/register",
        body={
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": False,
            "mac": mac.hexdigest(),
        },
    )
    return got["user_id"], got["access_token"]


SYNC_FILTER = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"types": ["m.room.message"], "limit": 1000},
        "state": {"types": []},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}


async def setup(srv: Server, args, rng: random.Random) -> list[list[User]]:
    """Register the users, make the rooms, prime each user's /sync."""
    gate = asyncio.Semaphore(16)
    run = f"{os.getpid()}x{rng.randrange(1 << 30):x}"

    async def one_user(i: int) -> User:
        async with gate:
            uid, tok = await register(srv, args.shared_secret, f"b{run}u{i}")
            u = User(i, uid, tok)
            u.filter_id = (
                await srv.call(
                    "POST",
                    f"{CLIENT}/user/{uid}/filter",
                    auth=u.auth,
                    body=SYNC_FILTER,
                )
            )["filter_id"]
            return u

    n = args.rooms * args.members
    users = await asyncio.gather(*(one_user(i) for i in range(n)))
    rooms = [users[r * args.members : (r + 1) * args.members] for r in range(args.rooms)]

    async def one_room(r: int, members: list[User]) -> None:
        async with gate:
            creator, others = members[0], members[1:]
            room = (
                await srv.call(
                    "POST",
                    f"{CLIENT}/createRoom",
                    auth=creator.auth,
                    body={
                        "preset": "private_chat",
                        "name": f"bench room {r}",
                        "invite": [u.user_id for u in others],
                    },
                )
            )["room_id"]
            for u in others:
                await srv.call("POST", f"{CLIENT}/rooms/{room}/join", auth=u.auth, body={})
            for u in members:
                u.room = room

    await asyncio.gather(*(one_room(r, m) for r, m in enumerate(rooms)))

    async def prime(u: User) -> None:
        async with gate:
            got = await srv.call(
                "GET",
                f"{CLIENT}/sync",
                auth=u.auth,
                params={"filter": u.filter_id, "timeout": "0"},
            )
            u.since = got["next_batch"]

    await asyncio.gather(*(prime(u) for u in users))
    for u in users:
        u.bodies = [body(rng, rng.randint(200, 4096)) for _ in range(32)]
    return rooms


async def sync_loop(srv: Server, u: User, table: Table) -> None:
    """Long-poll /sync for `u`, counting each message from someone else."""
    params = {"filter": u.filter_id, "timeout": "30000", "since": u.since}
    while True:
        try:
            got = await srv.call("GET", f"{CLIENT}/sync", auth=u.auth, params=params)
        except (aiohttp.ClientError, RuntimeError, asyncio.TimeoutError) as e:
            table.errors += 1
            print(f"sync {u.user_id}: {e}", file=sys.stderr)
            await asyncio.sleep(0.5)
            continue
        params["since"] = got["next_batch"]
        if table.measuring:
            table.syncs += 1
        for joined in got.get("rooms", {}).get("join", {}).values():
            timeline = joined.get("timeline", {})
            if timeline.get("limited"):
                table.gaps += 1
            for ev in timeline.get("events", ()):
                if ev.get("type") == "m.room.message" and ev.get("sender") != u.user_id:
                    table.arrived(ev.get("content", {}).get("bench.key"))


async def send(srv: Server, u: User, table: Table, recipients: int, at_ns: int | None) -> None:
    """Send `u`'s next message (stamped `at_ns`, or now)."""
    n = u.sent
    u.sent += 1
    key = f"{u.index}.{n}"
    table.sent(key, u.index, recipients, table.now_ns() if at_ns is None else at_ns)
    content = {"msgtype": "m.text", "body": u.bodies[n % len(u.bodies)], "bench.key": key}
    try:
        await srv.call(
            "PUT",
            f"{CLIENT}/rooms/{u.room}/send/m.room.message/t{n}",
            auth=u.auth,
            body=content,
        )
    except (aiohttp.ClientError, RuntimeError, asyncio.TimeoutError) as e:
        print(f"send {u.user_id}: {e}", file=sys.stderr)
        await asyncio.sleep(0.1)
        table.refused(key)


async def closed_sender(srv: Server, u: User, table: Table, recipients: int, window: int) -> None:
    tasks: set[asyncio.Task] = set()
    for _ in range(window):
        u.credits.put_nowait(None)
    try:
        while True:
            await u.credits.get()
            t = asyncio.create_task(send(srv, u, table, recipients, None))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()


async def open_sender(
    srv: Server, u: User, table: Table, recipients: int, period: float, phase: float
) -> None:
    tasks: set[asyncio.Task] = set()
    due = time.monotonic() + phase
    try:
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            at_ns = int(due * 1e9) - table.start
            t = asyncio.create_task(send(srv, u, table, recipients, at_ns))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            due += period
    finally:
        for t in tasks:
            t.cancel()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user+sys, all threads) of process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy() -> tuple[float, float]:
    """Busy and total jiffies of the whole machine (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def vm_kib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return float(line.split()[1])
    return 0.0


def pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    i = min(len(sorted_ms) - 1, max(0, int(round(p / 100 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[i]


async def measure(table: Table, args, pid: int) -> dict:
    """Warm up, then sample one measured interval."""
    await asyncio.sleep(args.warmup)
    table.reset()
    table.measuring = True
    cpu0, me0, (busy0, all0), t0 = proc_cpu(pid), self_cpu(), machine_busy(), time.monotonic()
    await asyncio.sleep(args.seconds)
    table.measuring = False
    elapsed = time.monotonic() - t0
    cpu1, me1, (busy1, all1) = proc_cpu(pid), self_cpu(), machine_busy()
    samples = sorted(table.samples)
    return {
        "messages_per_sec": table.posted / elapsed,
        "deliveries_per_sec": table.delivered / elapsed,
        "sync_responses_per_sec": table.syncs / elapsed,
        "latency_ms": {
            "p50": pct(samples, 50),
            "p90": pct(samples, 90),
            "p99": pct(samples, 99),
            "max": samples[-1] if samples else float("nan"),
        },
        "synapse_cpu_cores": (cpu1 - cpu0) / elapsed,
        "loadgen_cpu_cores": (me1 - me0) / elapsed,
        "machine_busy_cores": (busy1 - busy0) / max(1, all1 - all0) * (os.cpu_count() or 1),
        "errors": table.errors,
        "unknown": table.unknown,
        "limited_syncs": table.gaps,
    }


async def drain(table: Table, limit: float) -> None:
    end = time.monotonic() + limit
    while table.flight and time.monotonic() < end:
        await asyncio.sleep(0.1)
    table.flight.clear()


async def main(args) -> dict:
    rng = random.Random(args.seed)
    conn = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=90)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:
        srv = Server(http, args.url.rstrip("/"))
        t0 = time.monotonic()
        rooms = await setup(srv, args, rng)
        users = [u for members in rooms for u in members]
        setup_s = time.monotonic() - t0
        print(
            f"set up {len(rooms)} rooms x {args.members} members in {setup_s:.1f} s",
            file=sys.stderr,
        )
        table = Table(users)
        recipients = args.members - 1
        syncs = [asyncio.create_task(sync_loop(srv, u, table)) for u in users]
        result = {"setup_seconds": setup_s}
        try:
            table.closed = True
            senders = [
                asyncio.create_task(closed_sender(srv, u, table, recipients, args.window))
                for u in users
            ]
            print(
                f"saturation: {args.warmup:g} s warm-up, {args.seconds:g} s measured…",
                file=sys.stderr,
            )
            result["saturation"] = await measure(table, args, args.pid)
            for s in senders:
                s.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            if args.half_load:
                table.closed = False
                await drain(table, 60)
                rate = result["saturation"]["messages_per_sec"] / 2
                period = len(users) / max(rate, 0.1)
                senders = [
                    asyncio.create_task(
                        open_sender(
                            srv, u, table, recipients, period, period * ((n * 0.618034) % 1.0)
                        )
                    )
                    for n, u in enumerate(users)
                ]
                print(
                    f"half load ({rate:.1f} messages/s, open loop): "
                    f"{args.warmup:g} s warm-up, {args.seconds:g} s measured…",
                    file=sys.stderr,
                )
                result["half_load"] = await measure(table, args, args.pid)
                result["half_load"]["offered_messages_per_sec"] = rate
                for s in senders:
                    s.cancel()
                await asyncio.gather(*senders, return_exceptions=True)
        finally:
            for s in syncs:
                s.cancel()
            await asyncio.gather(*syncs, return_exceptions=True)
        result["synapse_peak_rss_mib"] = vm_kib(args.pid, "VmHWM:") / 1024
        result["synapse_rss_mib"] = vm_kib(args.pid, "VmRSS:") / 1024
        with open("/proc/loadavg") as f:
            result["machine"] = {
                "cores": os.cpu_count(),
                "loadavg_1_5_15": [float(x) for x in f.read().split()[:3]],
            }
        return result


def report(args, result: dict) -> None:
    rows = [("", "saturation")] + ([("", "half load")] if "half_load" in result else [])
    runs = [result["saturation"]] + ([result["half_load"]] if "half_load" in result else [])

    def line(name: str, fmt: str, get) -> None:
        print(f"  {name:<30}" + "".join(f"{fmt.format(get(r)):>16}" for r in runs))

    print(
        f"\nSynapse {args.synapse_version} (SQLite, one process, rate limits off, presence off): "
        f"{args.rooms} rooms x {args.members} members, window {args.window}, "
        f"{args.warmup:g} s warm-up, {args.seconds:g} s measured"
    )
    print(f"  {'':<30}" + "".join(f"{h:>16}" for _, h in rows))
    line("messages/s", "{:.1f}", lambda r: r["messages_per_sec"])
    line("member deliveries/s", "{:.1f}", lambda r: r["deliveries_per_sec"])
    line("/sync responses/s", "{:.1f}", lambda r: r["sync_responses_per_sec"])
    line("latency p50 (ms)", "{:.1f}", lambda r: r["latency_ms"]["p50"])
    line("latency p99 (ms)", "{:.1f}", lambda r: r["latency_ms"]["p99"])
    line("Synapse CPU (cores)", "{:.2f}", lambda r: r["synapse_cpu_cores"])
    line("Synapse CPU per message (ms)", "{:.1f}",
         lambda r: 1000 * r["synapse_cpu_cores"] / max(r["messages_per_sec"], 1e-9))
    line("messages/s per Synapse core", "{:.1f}",
         lambda r: r["messages_per_sec"] / max(r["synapse_cpu_cores"], 1e-9))
    line("deliveries/s per Synapse core", "{:.1f}",
         lambda r: r["deliveries_per_sec"] / max(r["synapse_cpu_cores"], 1e-9))
    line("load generator CPU (cores)", "{:.2f}", lambda r: r["loadgen_cpu_cores"])
    line("machine busy (cores, all)", "{:.2f}", lambda r: r["machine_busy_cores"])
    line("errors / unknown / limited", "{}",
         lambda r: f"{r['errors']}/{r['unknown']}/{r['limited_syncs']}")
    print(f"  {'Synapse peak RSS (MiB)':<30}{result['synapse_peak_rss_mib']:>16.1f}")
    print(f"  {'setup (s)':<30}{result['setup_seconds']:>16.1f}")
    m = result["machine"]
    print(f"  {'machine load average 1/5/15':<30}{' '.join(map(str, m['loadavg_1_5_15'])):>16}"
          f"  ({m['cores']} cores)")
    print(
        f"  At saturation {args.rooms * args.members * args.window} messages are in flight, so its\n"
        "  latency is mostly queueing (in flight / rate); compare latency at half load.\n"
        "  Per core = figure / Synapse CPU: what one whole core would give (on a shared\n"
        "  machine Synapse may get less than one core; see 'machine busy')."
    )
    print(
        "  Note: Synapse's messages here are plain m.room.message text; Caucus's are end-to-end\n"
        "  encrypted and signed. An encrypted Matrix room adds client-side Olm/Megolm work\n"
        "  (and to-device key traffic); the server's cost per message is comparable."
    )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="Synapse's client API base URL")
    p.add_argument("--pid", type=int, required=True, help="Synapse's process id")
    p.add_argument("--shared-secret", required=True, help="registration_shared_secret")
    p.add_argument("--synapse-version", default="?")
    p.add_argument("--rooms", type=int, default=40)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--window", type=int, default=1,
                   help="undelivered messages per sender at saturation (1: five concurrent "
                        "sends per room of 5 already saturate Synapse; more fork the room's "
                        "DAG into many forward extremities)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of warm-up per run")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds measured per run")
    p.add_argument("--no-half-load", dest="half_load", action="store_false",
                   help="skip the open-loop run at half the saturated rate")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    if args.members < 2 or args.rooms < 1 or args.window < 1:
        p.error("need at least 1 room, 2 members and a window of 1")
    return args


if __name__ == "__main__":
    a = parse()
    res = asyncio.run(main(a))
    res["config"] = {
        k: getattr(a, k)
        for k in ("synapse_version", "rooms", "members", "window", "warmup", "seconds", "seed")
    }
    report(a, res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
