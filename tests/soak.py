#!/usr/bin/python3
"""./dev soak [--minutes M]: every server we ship, on both backends, under verifying load while
peers misbehave; it fails when anything is lost or when the server keeps what it should let go.

For each app that is built (coring-echo, coring-http, coring-pubsub) and each backend (uring,
epoll), one server (one core, --stats-every 1, and --faults SEED --stats when its --help offers
--faults: a bare seed injects every fault but resets, so no client may see one) gets:
  - coring-load, open loop, every reply verified (echo: random sizes; http: pipelined GETs;
    pubsub: publishers and subscribers, every delivery checked for loss, duplicates and order);
  - churn: connections that open, do one verified exchange and close, and misbehaving peers
    among them: resets (SO_LINGER 0 mid-request, and right after a request, before the reply),
    half-closes (shutdown(SHUT_WR), then the rest of the replies until EOF, verified) and slow
    readers (a large request read back 4 KiB at a time);
  - echo only, the stalled peers: 8 clients that stop reading with every buffer between them and
    the server full (misbehaving_peers.stuff), and a client process streaming through the
    server that is SIGSTOPped mid-stream; both stall for min(60, 10 x M) s while the verifying
    load must keep its rate; then the stopped one goes on and verifies every byte it gets back.
    pubsub: coring-load's own stalled subscribers (--slow), reported apart from the verified ones.
Each second it samples the server's RssAnon, open fds, and its cores' live tasks, ops in flight
and receive buffers in use (the --stats-every line). The bounds (BOUNDS below, printed at start)
decide; the samples go to build/soak/samples.csv, the summary to build/soak/summary.csv.
Python stdlib only; every process it starts is ended by its PID.
"""
import argparse
import csv
import json
import os
import random
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
import benchlib  # noqa: E402  (ports, spawn, end, end_all: the runners' process handling)
from misbehaving_peers import rss_anon_kib, stuff  # noqa: E402  (the stalled peers)

# ---- the bounds --------------------------------------------------------------------------------
WARMUP_S = 3             # samples before this (from the load's start) are not judged
# Memory is judged in two parts. The receive pool (1024 x 16 KiB per core, mapped at start) is
# bounded by construction; its pages become resident as the buffer ring hands buffers out, and a
# ring that grows (peers that stall make it run dry) touches more of it. So the pool's touched
# pages (pool_touched_kib) are reported, and the rest of RssAnon, the heap, is what must not grow:
RSS_SLACK_MIB = 8        # heap (RssAnon - pool pages) after warm-up: at most its post-warm-up median + this ...
# ... + what the stalled peers may hold while they stall, should the pool run dry and it come from
# spares on the heap: ARCHITECTURE.md, "A connection whose reader is away queues at most 2 buffers",
# plus the lease the echo is writing back, plus up to 32 buffers that one multishot pass takes from
# a full socket: 35 receive buffers per stalled peer.
STALL_BUFFERS_PER_PEER = 35
BUFFER_SIZE = 16384      # the runtime's default --buffer-size
POOL_BUFFERS = 1024      # the runtime's default --buffers on one core
# Buffers in use while peers stall: ARCHITECTURE.md, "Misbehaving peers can hold the first half of
# the pool plus one kernel pass each" (past half the pool, receives are single-shot and only for
# readers that wait); on io_uring a bundle's pass may take more than 32, so a stall on a plentiful
# pool typically ends near half of it.


def stall_buffer_bound(peers):
    return POOL_BUFFERS // 2 + STALL_BUFFERS_PER_PEER * peers


STUFFED_PEERS = 8
FD_SLACK = 16            # open fds while clients come and go: baseline + clients + this
SETTLE_S = 5             # after the last client left: fds, tasks, ops and buffers back to baseline within this
STALL_KEEP_RATE = 0.8    # the verifying load during the stall: this share of its rate on average, and no second without replies
LOAD_RATE = {"echo": 2000, "http": 2000, "pubsub": 400}  # per second: requests, requests, publishes
LOAD_CONNS = 16
PUBSUB_SUBSCRIBERS, PUBSUB_CHANNELS, PUBSUB_PUBLISHERS, PUBSUB_SLOW = 40, 4, 2, 2

APPS = {  # app: (binary, coring-load protocol, share of the soak's time)
    "echo": ("coring-echo", "echo", 3),   # three times the time: it also hosts the stalled peers
    "http": ("coring-http", "http", 1),
    "pubsub": ("coring-pubsub", "pubsub", 1),
}
BACKENDS = ("uring", "epoll")


def bounds_text(stall_s):
    stall_mib = (STUFFED_PEERS + 1) * STALL_BUFFERS_PER_PEER * BUFFER_SIZE / 2**20
    return (f"soak: bounds: after {WARMUP_S} s of warm-up, heap (RssAnon - receive pool pages, the pool being "
            f"bounded at 16 MiB per core) <= post-warm-up median + {RSS_SLACK_MIB} MiB (+ {stall_mib:.1f} MiB while "
            f"{STUFFED_PEERS + 1} peers stall: {STALL_BUFFERS_PER_PEER} x {BUFFER_SIZE // 1024} KiB buffers each); "
            f"buffers in use while they stall <= pre-stall + half the pool + {STALL_BUFFERS_PER_PEER} per stalled peer "
            f"({stall_buffer_bound(STUFFED_PEERS + 1)}); "
            f"open fds <= baseline + clients + {FD_SLACK} (io_uring: accepted sockets are direct descriptors, not fds); "
            f"{SETTLE_S} s after the last client: fds, tasks, ops in flight and buffers in use back to their "
            f"baseline; during the {stall_s:.0f} s stall the verified load keeps >= {STALL_KEEP_RATE:.0%} of its rate "
            f"and replies every second; no verify error, nothing lost")


# ---- the protocols, as the churn peers speak them ----------------------------------------------
class echo_proto:
    def request(self, rng, n):
        return rng.randbytes(n * 512)

    def done(self, req, n, data):  # None: not yet; otherwise whether data is the full right answer
        return None if len(data) < len(req) else data == req


class http_proto:
    GET = b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n"
    BODY = b"Hello, World!"

    def request(self, rng, n):
        return self.GET * n

    def done(self, req, n, data):
        if data.count(self.BODY) < n or not data.endswith(self.BODY):
            return None
        return data.count(b"HTTP/1.1 200 ") == n and data.count(self.BODY) == n


class resp_proto:
    PING = b"*1\r\n$4\r\nPING\r\n"

    def request(self, rng, n):
        return self.PING * n

    def done(self, req, n, data):
        return None if len(data) < 7 * n else data == b"+PONG\r\n" * n


PROTOS = {"echo": echo_proto(), "http": http_proto(), "pubsub": resp_proto()}


def read_until(sock, proto, req, n, limit, chunk=65536, pace=0.0):
    """Reads replies until proto says they are complete (True/False) or EOF/limit (False)."""
    data = b""
    end = time.time() + limit
    sock.settimeout(limit)
    while time.time() < end:
        verdict = proto.done(req, n, data)
        if verdict is not None:
            return verdict, data
        got = sock.recv(chunk)
        if not got:
            return False, data
        data += got
        if pace:
            time.sleep(pace)
    return False, data


class churner:
    """One thread: connections that open, misbehave or not, and close, one after another."""
    KINDS = ("plain", "plain", "reset_mid", "reset_after", "half_close", "slow_reader")

    def __init__(self, port, app, seed):
        self.port, self.proto, self.rng = port, PROTOS[app], random.Random(seed)
        self.counts = {k: 0 for k in self.KINDS}
        self.conns = self.verified_bytes = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            kind = self.rng.choice(self.KINDS)
            try:
                self.one(kind)
                self.counts[kind] += 1
            except OSError as e:
                self.errors.append(f"{kind}: {e}")
            self.conns += 1
            self.stop.wait(0.01)

    def one(self, kind):
        n = self.rng.randint(1, 4)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            if kind == "reset_mid" or kind == "reset_after":
                req = self.proto.request(self.rng, n)
                s.sendall(req[: len(req) // 2] if kind == "reset_mid" else req)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return  # the close sends RST
            if kind == "slow_reader":
                n = 512 if isinstance(self.proto, echo_proto) else 400  # 256 KiB echoed, or 400 replies
                req = self.proto.request(self.rng, n)
                threading.Thread(target=s.sendall, args=(req,), daemon=True).start()
                ok, data = read_until(s, self.proto, req, n, 20, chunk=4096, pace=0.002)
            else:
                req = self.proto.request(self.rng, n)
                s.sendall(req)
                if kind == "half_close":
                    s.shutdown(socket.SHUT_WR)
                ok, data = read_until(s, self.proto, req, n, 10)
                if ok and kind == "half_close":
                    ok = s.recv(1) == b""  # and then the server closes its side
            if not ok:
                self.errors.append(f"{kind}: {len(data)} bytes back, not the {n} replies expected")
            else:
                self.verified_bytes += len(data)


# ---- the SIGSTOPped peer: a child process streaming through the echo server --------------------
PATTERN = bytes((i * 7 + 3) & 255 for i in range(65536))


def stream_child(port, total):
    """Sends `total` bytes paced at 3.2 MB/s and checks that every byte comes back, in order."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent = got = 0
    print("streaming", flush=True)
    next_send = time.time()
    while got < total:
        for _, ev in sel.select(0.005):
            if ev & selectors.EVENT_READ:
                data = s.recv(1 << 20)
                if not data:
                    sys.exit(f"stream: server closed after {got} of {total} bytes")
                for i in range(0, len(data), 65536):
                    part = data[i:i + 65536]
                    off = (got + i) % 65536
                    want = (PATTERN[off:] + PATTERN[:off])[: len(part)]
                    if part != want:
                        sys.exit(f"stream: wrong bytes at offset {got + i}")
                got += len(data)
        if sent < total and time.time() >= next_send:
            try:
                off = sent % 65536
                sent += s.send((PATTERN[off:] + PATTERN[:off])[: min(16384, total - sent)])
            except BlockingIOError:
                pass
            next_send += 0.005
            if sent >= total:
                sel.modify(s, selectors.EVENT_READ)
    print(f"streamed {got} bytes, every one verified", flush=True)


class staller:
    """The stalled peers, set up on a thread of their own while sampling goes on: the stuffed
    clients (misbehaving_peers.stuff takes seconds to fill every buffer), then the streaming
    child, SIGSTOPped a second into its stream."""

    def __init__(self, port):
        self.port, self.peers, self.child, self.since = port, [], None, None
        self.thread = threading.Thread(target=self.begin, daemon=True)
        self.thread.start()

    def begin(self):
        self.peers = stuff(self.port, STUFFED_PEERS)
        self.child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--stream-child", str(self.port),
                                       str(int(3.2e6 * 4))], stdout=subprocess.PIPE, text=True)
        self.child.stdout.readline()  # "streaming"
        time.sleep(1)                 # mid-stream
        self.child.send_signal(signal.SIGSTOP)
        self.since = time.time()

    def release(self):
        """SIGCONT for the child, close for the stuffed peers; the child's verdict (None: passed)."""
        self.thread.join(90)
        for s in self.peers:
            s.close()
        self.peers = []
        if self.child is None:
            return "the stalled peers were never set up"
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGCONT)
        try:
            said = self.child.communicate(timeout=30)[0].strip()
            return None if self.child.returncode == 0 else f"the SIGSTOPped peer failed: {said}"
        except subprocess.TimeoutExpired:
            self.child.kill()  # our own child, by its Popen
            self.child.wait()
            return "the SIGSTOPped peer did not finish within 30 s of SIGCONT"


# ---- one server under soak -----------------------------------------------------------------------
STATS = re.compile(r"stats core (\d+): tasks (\d+), in_flight (\d+), buffers_in_use (\d+), pool_touched_kib (\d+)")
LOAD_RATE_LINE = re.compile(r"(?:msgs/s|deliveries/s)\s+(\d+)")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class server:
    def __init__(self, build, app, backend, port, seed, faults_supported):
        binary = os.path.join(build, "apps", APPS[app][0])
        cmd = [binary, "--listen", f"127.0.0.1:{port}", "--cores", "1", "--backend", backend, "--stats-every", "1"]
        if faults_supported:  # a bare seed: every fault but resets, none of which a client may see
            cmd += ["--faults", str(seed), "--stats"]
        self.cmd = cmd
        self.proc = benchlib.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.gauges = {}  # core: (tasks, in_flight, buffers_in_use, pool_touched_kib), the latest line
        self.lines = []   # everything else it said (the last 50)
        self.stderr_done = threading.Event()
        threading.Thread(target=self.read_stderr, daemon=True).start()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {' '.join(cmd)}: {' | '.join(self.lines[-2:])}")

    def read_stderr(self):
        for line in self.proc.stderr:
            m = STATS.search(line)
            if m:
                self.gauges[int(m[1])] = tuple(int(m[k]) for k in range(2, 6))
            else:
                self.lines = (self.lines + [line.rstrip()])[-50:]
        self.stderr_done.set()

    def sample(self):
        """(rss_kib, fds, tasks, in_flight, buffers_in_use, pool_touched_kib); -1 for gauges not seen yet."""
        g = [sum(v[k] for v in self.gauges.values()) if self.gauges else -1 for k in range(4)]
        return (rss_anon_kib(self.proc.pid), fd_count(self.proc.pid), *g)


class load_run:
    """coring-load with its per-second rate recorded as it goes; results from its --json."""

    def __init__(self, build, app, backend, port, seconds, json_path):
        proto = APPS[app][1]
        cmd = [os.path.join(build, "apps", "coring-load"), "--protocol", proto, "--target", f"127.0.0.1:{port}",
               "--backend", backend, "--duration", str(seconds), "--warmup", "1", "--json", json_path,
               "--rate", str(LOAD_RATE[app])]
        if app == "pubsub":
            cmd += ["--subscribers", str(PUBSUB_SUBSCRIBERS), "--channels", str(PUBSUB_CHANNELS),
                    "--publishers", str(PUBSUB_PUBLISHERS), "--slow", f"{PUBSUB_SLOW},{max(1, seconds // 3)}"]
        else:
            cmd += ["--conns", str(LOAD_CONNS), "--depth", "4"]
            if app == "echo":
                cmd += ["--size", "1:16384"]
        self.json_path, self.rates, self.other = json_path, [], []
        self.proc = benchlib.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self.read_stderr, daemon=True)
        self.thread.start()

    def read_stderr(self):
        for line in self.proc.stderr:
            m = LOAD_RATE_LINE.search(line)
            if m:
                self.rates.append((time.time(), int(m[1])))
            else:
                self.other.append(line.rstrip())

    def last_rate(self):
        return self.rates[-1][1] if self.rates else 0

    def finish(self, limit):
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            benchlib.end(self.proc)
            return None, "coring-load did not finish in time"
        self.thread.join(5)
        out = self.proc.stdout.read()
        try:
            with open(self.json_path) as f:
                return json.load(f), out
        except (OSError, ValueError):
            return None, out


def soak_one(args, app, backend, seconds, stall_s, seed, faults_supported, samples):
    """Runs one combination; returns (summary row, list of failures)."""
    name = f"{app}/{backend}"
    failures = []
    port = benchlib.ports().take()
    srv = server(args.build, app, backend, port, seed, faults_supported)
    t0 = time.time()
    while not srv.gauges and time.time() - t0 < 3:  # the first --stats-every line: the baseline
        time.sleep(0.1)
    base = srv.sample()
    load_s = max(5, int(seconds) - 2)
    json_path = os.path.join(args.out, f"load-{app}-{backend}.json")
    load = load_run(args.build, app, backend, port, load_s, json_path)
    churn = churner(port, app, seed)
    churn.thread.start()
    start = time.time()
    stall_at = start + WARMUP_S + 1 if app == "echo" else None
    stall, stall_from, stall_end, stalled = None, None, None, False
    rows = []
    last_print = 0
    while load.proc.poll() is None and time.time() - start < load_s + 60:
        now = time.time()
        if srv.proc.poll() is not None:
            benchlib.end(load.proc)
            break
        if stall_at and now >= stall_at and stall is None:
            stall = staller(port)
        if stall and stall.since and stall_from is None:
            stall_from, stall_end, stalled = stall.since, stall.since + stall_s, True
            print(f"soak: {name}: {len(stall.peers)} peers stopped reading with full buffers, "
                  f"pid {stall.child.pid} SIGSTOPped mid-stream, for {stall_s:.0f} s", flush=True)
        if stalled and now >= stall_end:
            stalled = False
            verdict = stall.release()
            if verdict:
                failures.append(verdict)
            print(f"soak: {name}: the stalled peers went on (SIGCONT, closes){': ' + verdict if verdict else ''}",
                  flush=True)
        phase = "warmup" if now - start < WARMUP_S else ("stall" if stalled else "load")
        rss, fds, tasks, in_flight, buffers, touched = srv.sample()
        row = [name, app, backend, round(now - start, 1), phase, rss, fds, tasks, in_flight, buffers, touched,
               load.last_rate(), churn.conns]
        rows.append(row)
        samples.writerow(row)
        if now - last_print >= 5:
            last_print = now
            print(f"soak: {name} {now - start:4.0f}/{load_s} s  RssAnon {rss / 1024:6.1f} MiB  fds {fds:4d}  "
                  f"tasks {tasks:4d}  in_flight {in_flight:4d}  buffers {buffers:4d}  load {load.last_rate():6d}/s  "
                  f"churn {churn.conns} conns", flush=True)
        time.sleep(max(0.0, 1 - (time.time() - now)))
    result, out = load.finish(60)
    if srv.proc.poll() is not None:  # the root cause of whatever else fails: said first
        srv.stderr_done.wait(5)
        failures.append(f"the server exited by itself (status {srv.proc.returncode}) within {time.time() - start:.0f} s; "
                        f"it said: {' | '.join(srv.lines[-2:])}")
    churn.stop.set()
    churn.thread.join(30)
    if stall and (stalled or stall_from is None):  # the load ended first: a soak shorter than its stall
        verdict = stall.release()
        failures += [verdict] if verdict else []

    # Settle: every client gone, so the server must be back where it started.
    settled, end = None, time.time() + SETTLE_S
    while time.time() < end and srv.proc.poll() is None:
        s = srv.sample()
        rows.append([name, app, backend, round(time.time() - start, 1), "settle", *s, 0, churn.conns])
        samples.writerow(rows[-1])
        if s[1] == base[1] and s[2:5] == base[2:5]:
            settled = s
            break
        time.sleep(0.5)
    after = rows[-1][5:11]
    if not settled and srv.proc.poll() is None:
        failures.append(f"{SETTLE_S} s after the last client: fds {after[1]} tasks {after[2]} in_flight {after[3]} "
                        f"buffers {after[4]}, baseline fds {base[1]} tasks {base[2]} in_flight {base[3]} buffers {base[4]}")

    # The load's verdict. Only the churn's misbehaving peers were reset, and the backend's faults
    # (a bare seed: no resets) are all ones the server must hide: the verifying load sees no error.
    if result is None:
        failures.append(f"coring-load gave no result: {out[-300:] if out else ''} {load.other[-3:]}")
        result = {}
    errors = result.get("errors", {})
    if errors.get("total", 0) > 0:
        failures.append(f"coring-load errors {errors}: {result.get('first_error', '')}")
    if errors.get("verify", 0) or result.get("lost", 0) or result.get("duplicated", 0) or result.get("reordered", 0):
        failures.append(f"verification: verify errors {errors.get('verify', 0)}, lost {result.get('lost', 0)}, "
                        f"duplicated {result.get('duplicated', 0)}, reordered {result.get('reordered', 0)}")
    failures += [f"churn: {e}" for e in churn.errors[:5]]
    if len(churn.errors) > 5:
        failures.append(f"churn: {len(churn.errors) - 5} more errors")

    # The gauges against the bounds.
    # Rows: [name, app, backend, t, phase, rss, fds, tasks, in_flight, buffers, touched, rate, churn].
    judged = [r for r in rows if r[4] in ("load", "stall") and r[5] > 0]
    rss_all = [r[5] for r in rows if r[5] > 0]
    # A sample's stats line is up to a second older than its RssAnon, so pool pages touched in
    # between show only in the next line: each sample takes the larger of its own and the next.
    pool = {id(r): max(r[10], n[10], 0) for r, n in zip(rows, rows[1:] + rows[-1:])}
    heap = lambda r: r[5] - pool[id(r)]  # noqa: E731
    if judged:
        median = statistics.median(heap(r) for r in judged)
        stall_kib = (STUFFED_PEERS + 1) * STALL_BUFFERS_PER_PEER * BUFFER_SIZE / 1024
        for r in judged:
            limit = median + RSS_SLACK_MIB * 1024 + (stall_kib if r[4] == "stall" else 0)
            if heap(r) > limit:
                failures.append(f"heap {heap(r) / 1024:.1f} MiB (RssAnon {r[5] / 1024:.1f} MiB, pool pages "
                                f"{pool[id(r)] / 1024:.1f} MiB) at {r[3]} s ({r[4]}), bound {limit / 1024:.1f} MiB")
                break
        before = [r[9] for r in judged if stall_at and r[3] < stall_at - start]  # before the stuffing began
        for r in judged:
            limit = max(before, default=0) + stall_buffer_bound(STUFFED_PEERS + 1)
            if r[4] == "stall" and r[9] > limit:
                failures.append(f"{r[9]} buffers in use at {r[3]} s while peers stall, bound {limit}")
                break
        clients = LOAD_CONNS + (PUBSUB_SUBSCRIBERS + PUBSUB_PUBLISHERS if app == "pubsub" else 0) + STUFFED_PEERS + 2
        for r in judged:
            if r[6] > base[1] + clients + FD_SLACK:
                failures.append(f"{r[6]} fds at {r[3]} s, bound {base[1] + clients + FD_SLACK}")
                break
    if stall_from:
        during = [v for t, v in load.rates if stall_from + 1 <= t <= stall_end]
        mean = statistics.mean(during) if during else 0
        if mean < STALL_KEEP_RATE * LOAD_RATE[app] or 0 in during:
            failures.append(f"the verifying load slowed while peers stalled: {mean:.0f}/s on average over {len(during)} s "
                            f"(bound {STALL_KEEP_RATE * LOAD_RATE[app]:.0f}/s), lowest second {min(during, default=0)}/s")

    # Stop: SIGTERM, and a clean exit within the drain timeout (5 s) + 1 s.
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(timeout=6)
        if rc != 0 and "exited by itself" not in " ".join(failures):
            failures.append(f"server exit status {rc} after SIGTERM: {srv.lines[-3:]}")
    except subprocess.TimeoutExpired:
        failures.append("server still running 6 s after SIGTERM")
    benchlib.end(srv.proc)
    srv.stderr_done.wait(5)
    injected = {}  # --stats at exit: "fault_short_io=N ..." per core
    for line in srv.lines:
        for kind, n in re.findall(r"fault_(\w+)=(\d+)", line if "stats core" in line else ""):
            injected[kind] = injected.get(kind, 0) + int(n)

    conns = result.get("connected", 0) + churn.conns + (STUFFED_PEERS + 1 if stall_from else 0)
    if app == "pubsub":
        verified = result.get("delivered", 0) * result.get("size", 64)
    else:
        verified = int(result.get("mb_per_sec", 0) * 1e6 * result.get("duration_s", 0))
    verified += churn.verified_bytes
    fds_all = [r[6] for r in rows if r[6] >= 0]
    summary = {"combination": name, "seconds": round(time.time() - start), "connections": conns,
               "bytes_verified": verified, "load_messages": result.get("messages", 0),
               "resets": churn.counts["reset_mid"] + churn.counts["reset_after"],
               "half_closes": churn.counts["half_close"], "slow_readers": churn.counts["slow_reader"],
               "rss_min_mib": round(min(rss_all, default=0) / 1024, 1), "rss_max_mib": round(max(rss_all, default=0) / 1024, 1),
               "pool_touched_max_mib": round(max((r[10] for r in rows), default=0) / 1024, 1),
               "buffers_in_use_max": max((r[9] for r in rows), default=0),
               "fds_min": min(fds_all, default=0), "fds_max": max(fds_all, default=0),
               "faults_injected": sum(injected.values()),
               "verdict": "ok" if not failures else "FAILED"}
    if app == "pubsub" and result:
        print(f"soak: {name}: {result.get('slow', 0)} stalled subscribers (apart from the verified ones): received "
              f"{result.get('slow_received', 0)}, cut by the server {result.get('slow_cut', 0)}", flush=True)
    for f in failures:
        print(f"soak: {name}: FAILED: {f}", flush=True)
    print(f"soak: {name}: {summary['verdict']}: {conns} connections, {verified / 1e6:.1f} MB verified, "
          f"churn {churn.counts}" + (f", backend faults injected {injected}" if injected else ""), flush=True)
    return summary, [f"{name}: {f}" for f in failures]


def has_faults_flag(binary):
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--faults" in out


def plot(samples_csv, png):
    """RSS (MiB) and open fds over each combination's seconds, one line per combination, with
    gnuplot (no plot without it). Returns whether it wrote `png`."""
    import shutil
    if not shutil.which("gnuplot"):
        print("soak: gnuplot not found, no plot (apt-get install gnuplot-nox)")
        return False
    runs = {}
    with open(samples_csv) as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["combination"], []).append(row)
    data = os.path.splitext(png)[0] + ".dat"
    with open(data, "w") as f:  # gnuplot's input: per combination t, RSS MiB, fds
        for name, rows in runs.items():
            f.write(f'"{name}"\n')
            for r in rows:
                f.write(f"{r['t_s']} {int(r['rss_anon_kib']) / 1024:.2f} {r['fds']}\n")
            f.write("\n\n")
    n = len(runs) - 1
    script = (f'set terminal pngcairo size 1000,700 noenhanced; set output "{png}"; set multiplot layout 2,1;'
              f'set key outside right; set grid; set xlabel "seconds into the combination";'
              f'set title "server RssAnon (MiB), sampled each second"; set ylabel "MiB";'
              f'plot for [i=0:{n}] "{data}" index i using 1:2 with lines title columnheader(1);'
              f'set title "server open fds (io_uring: accepted sockets are direct descriptors)"; set ylabel "fds";'
              f'plot for [i=0:{n}] "{data}" index i using 1:3 with lines title columnheader(1); unset multiplot')
    r = subprocess.run(["gnuplot", "-e", script], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"soak: gnuplot failed: {r.stderr.strip()}")
    return r.returncode == 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--plot":  # an earlier run's samples, plotted again
        return 0 if plot(sys.argv[2], os.path.join(os.path.dirname(sys.argv[2]) or ".", "soak.png")) else 1
    if len(sys.argv) == 4 and sys.argv[1] == "--stream-child":
        stream_child(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=2)
    p.add_argument("--build", default="build")
    p.add_argument("--out", default=None, help="where the CSVs go (default BUILD/soak)")
    p.add_argument("--apps", default=",".join(APPS), help="a subset, e.g. echo,http")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--seed", type=int, default=None, help="the churn's and --faults' seed (default: random, printed)")
    args = p.parse_args()
    args.out = args.out or os.path.join(args.build, "soak")
    os.makedirs(args.out, exist_ok=True)
    seed = args.seed if args.seed is not None else random.randrange(1, 1 << 31)
    apps = [a for a in args.apps.split(",") if os.path.exists(os.path.join(args.build, "apps", APPS[a][0]))]
    combos = [(a, b) for a in apps for b in args.backends.split(",")]
    if not combos:
        print(f"soak: FAILED: no server built in {args.build}/apps")
        return 1
    shares = sum(APPS[a][2] for a, _ in combos)
    total_s = args.minutes * 60
    stall_s = min(60.0, 10 * args.minutes)
    print(f"soak: {args.minutes:g} min over {len(combos)} combinations, seed {seed} "
          f"(replay: tests/soak.py --seed {seed})", flush=True)
    print(bounds_text(stall_s), flush=True)
    faults = {a: has_faults_flag(os.path.join(args.build, "apps", APPS[a][0])) for a in apps}
    if not any(faults.values()):
        print("soak: the servers have no --faults yet: backend faults not injected", flush=True)
    failures, summaries = [], []
    with open(os.path.join(args.out, "samples.csv"), "w", newline="") as f:
        samples = csv.writer(f)
        samples.writerow(["combination", "app", "backend", "t_s", "phase", "rss_anon_kib", "fds", "tasks", "in_flight",
                          "buffers_in_use", "pool_touched_kib", "load_per_s", "churn_conns"])
        try:
            for app, backend in combos:
                seconds = total_s * APPS[app][2] / shares - 3  # start, settle and stop take about 3 s
                stall = min(stall_s, seconds - WARMUP_S - 6)
                try:
                    summary, failed = soak_one(args, app, backend, seconds, stall, seed, faults[app], samples)
                    summaries.append(summary)
                    failures += failed
                except RuntimeError as e:  # this server did not start: the next one may
                    print(f"soak: {app}/{backend}: FAILED: {e}", flush=True)
                    failures.append(f"{app}/{backend}: {e}")
                    benchlib.end_all()
        except OSError as e:
            failures.append(str(e))
        finally:
            benchlib.end_all()
    if summaries:
        with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(summaries[0]))
            w.writeheader()
            w.writerows(summaries)
        print(f"{'combination':<14} {'s':>4} {'conns':>7} {'MB verified':>11} {'resets':>6} {'half-cl':>7} {'slow':>5} "
              f"{'RSS MiB min..max':>17} {'pool':>5} {'bufs':>4} {'fds min..max':>12} {'faults':>7}  verdict")
        for s in summaries:
            print(f"{s['combination']:<14} {s['seconds']:>4} {s['connections']:>7} {s['bytes_verified'] / 1e6:>11.1f} "
                  f"{s['resets']:>6} {s['half_closes']:>7} {s['slow_readers']:>5} "
                  f"{s['rss_min_mib']:>8}..{s['rss_max_mib']:<8} {s['pool_touched_max_mib']:>5} {s['buffers_in_use_max']:>4} "
                  f"{s['fds_min']:>5}..{s['fds_max']:<6} {s['faults_injected']:>7}  {s['verdict']}")
    print(f"soak: samples in {args.out}/samples.csv, summary in {args.out}/summary.csv")
    if plot(os.path.join(args.out, "samples.csv"), os.path.join(args.out, "soak.png")):
        print(f"soak: RSS and fd curves in {args.out}/soak.png")
    if failures:
        print(f"soak: FAILED: {failures[0]}" + (f" (and {len(failures) - 1} more above)" if len(failures) > 1 else ""))
        return 1
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
