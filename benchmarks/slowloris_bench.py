#!/usr/bin/env python3
"""Slowloris: what 1,000 connections trickling a request head do to everyone else's latency.

Per run, one server (started afresh, pinned to --server-cpu like http_bench.py) is measured
twice with wrk (--conns connections, depth 1, pinned to --load-cpu): first alone, then while
--loris connections each send a partial head and one more header byte every --trickle ms (in
groups taking turns every 10 ms or so, as separate clients would). The slowloris client runs in a
process of its own on the load CPU, next to wrk, and stays until the server has closed every
one of its connections or --loris-wait seconds have passed since they opened: it reports how
many got a 408, how many were closed without a word, and when the last one ended (coring-http's
header timeout is 10 s; nginx's client_header_timeout is 60 s, past the wait, so its
connections are reported still open). Servers take turns within each repetition; medians of the
repetitions. Prints the table and, per server, p99 with slowloris / p99 without (the issue's
target: <= 2x). Writes CSV and JSON to --out. Python standard library only.
"""
import argparse
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
import shutil

import http_bench
from benchlib import end, end_all, fmt, ports, spawn, summary_row, write_results, run_main

PARTIAL_HEAD = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
KEYS = ("p99_alone_us", "p99_loris_us", "rps_alone", "rps_loris", "opened", "connect_failed", "got_408",
        "closed_quietly", "wrong", "still_open", "last_end_s")


def client(port, count, trickle_ms, wait_s):
    """The slowloris side (run as its own process): prints 'open N' once every connection has
    sent its partial head, then the outcome line when all are closed or wait_s has passed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, failed = [], 0
    for _ in range(count):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(PARTIAL_HEAD)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    opened = time.monotonic()
    print(f"open {len(socks)} failed {failed}", flush=True)
    live = {s.fileno(): s for s in socks}
    said = {fd: b"" for fd in live}
    got_408 = quiet = wrong = 0
    last_end = -1.0  # none ended
    # Connections take turns in groups, as separate clients would: a group every 10 ms or so,
    # so that neither the server nor the CPU this client shares with wrk sees one burst of all.
    groups = max(1, min(count, trickle_ms // 10))
    next_trickle = [opened + trickle_ms / 1000 * (g + 1) / groups for g in range(groups)]
    deadline = opened + wait_s
    poller = select.poll()
    for fd in live:
        poller.register(fd, select.POLLIN)
    while live and time.monotonic() < deadline:
        timeout = max(1, int((min(next_trickle) - time.monotonic()) * 1000))
        for fd, _ in poller.poll(min(timeout, trickle_ms)):
            s = live.get(fd)
            if s is None:
                continue
            try:
                data = s.recv(512)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                said[fd] += data[:64]
                if said[fd].startswith(b"HTTP/1.1 408 "):
                    got_408 += 1
                elif len(said[fd]) < 13:
                    continue
                else:
                    wrong += 1
            else:
                quiet += 1
            last_end = time.monotonic() - opened
            poller.unregister(fd)
            s.close()
            del live[fd]
        now = time.monotonic()
        for g in range(groups):
            if now < next_trickle[g]:
                continue
            next_trickle[g] = now + trickle_ms / 1000
            for i, s in enumerate(socks):
                if i % groups == g and s.fileno() in live:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass  # a reset shows at the next recv
    print(f"done 408 {got_408} quiet {quiet} wrong {wrong} open {len(live)} last_end {last_end:.2f}", flush=True)
    for s in live.values():
        s.close()


def run_once(build, server, args, tmp, port_pool):
    port = port_pool.take()
    proc, _ = http_bench.start_server(build, server, port, args, tmp)
    loris = None
    try:
        cell = {"conns": args.conns, "depth": 1}
        alone = http_bench.drive_wrk(port, proc.pid, cell, args, tmp)
        loris = spawn(["taskset", "-c", str(args.load_cpu), sys.executable, os.path.abspath(__file__), "--client",
                       str(port), str(args.loris), str(args.trickle), str(args.loris_wait)],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = loris.stdout.readline().split()
        if len(first) < 4 or first[0] != "open":
            raise RuntimeError(f"slowloris client: {' '.join(first) or 'no output'}")
        warmup, args.warmup = args.warmup, 0  # the server is warm: the same wrk, measured at once
        try:
            crowded = http_bench.drive_wrk(port, proc.pid, cell, args, tmp)
        finally:
            args.warmup = warmup
        out, _ = loris.communicate(timeout=args.loris_wait + 30)
        done = out.split()
        if proc.poll() is not None:
            raise RuntimeError(f"{server} died during the run (exit {proc.returncode})")
    finally:
        if loris:
            end(loris)
        end(proc)
    outcome = dict(zip(done[1::2], done[2::2])) if done and done[0] == "done" else {}
    last_end = float(outcome.get("last_end", -1))
    return {"p99_alone_us": alone["p99_us"], "p99_loris_us": crowded["p99_us"],
            "rps_alone": alone["req_per_sec"], "rps_loris": crowded["req_per_sec"],
            "opened": int(first[1]), "connect_failed": int(first[3]), "got_408": int(outcome.get("408", 0)),
            "closed_quietly": int(outcome.get("quiet", 0)), "wrong": int(outcome.get("wrong", 0)),
            "still_open": int(outcome.get("open", 0)), "last_end_s": last_end if last_end >= 0 else None,
            "errors": (alone["errors"] or 0) + (crowded["errors"] or 0),
            "note": "; ".join(n for n in (alone["note"], crowded["note"]) if n)}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, count, trickle, wait = sys.argv[2:6]
        client(int(port), int(count), int(trickle), float(wait))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with the binaries")
    ap.add_argument("--out", default="build/bench-results", help="where CSV and JSON go")
    ap.add_argument("--servers", default="coring-uring,coring-epoll,nginx",
                    help="comma-separated subset of coring-uring, coring-epoll, nginx")
    ap.add_argument("--conns", type=int, default=100, help="wrk's connections (default 100)")
    ap.add_argument("--loris", type=int, default=1000, help="slowloris connections (default 1000)")
    ap.add_argument("--trickle", type=int, default=300, help="ms between a slowloris connection's bytes (default 300)")
    ap.add_argument("--loris-wait", type=float, default=14.0,
                    help="seconds the slowloris client waits for the server to close its connections (default 14)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured wrk seconds before the first run (default 1)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    servers = args.servers.split(",")
    for s in servers:
        if s not in ("coring-uring", "coring-epoll", "nginx"):
            sys.exit(f"slowloris_bench: unknown server {s}")
    if not shutil.which("wrk"):
        sys.exit("slowloris_bench: wrk not found (apt-get install wrk)")
    if "nginx" in servers and not shutil.which("nginx"):
        sys.exit("slowloris_bench: nginx not found (apt-get install nginx-light)")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="coring-slowloris-bench.")
    port_pool = ports()
    runs = len(servers) * args.reps
    print(f"slowloris_bench: {len(servers)} servers x {args.reps} reps; each run: wrk -c{args.conns} for "
          f"{args.warmup}+{args.duration} s alone, then {args.duration} s next to {args.loris} slowloris connections "
          f"(a byte every {args.trickle} ms), then up to {args.loris_wait} s for the server to close them "
          f"(about {runs * (2 * args.duration + args.warmup + args.loris_wait + 2) / 60:.1f} min); server on CPU "
          f"{args.server_cpu}, wrk and the slowloris client on CPU {args.load_cpu}", file=sys.stderr)
    rows, done, started = [], 0, time.monotonic()
    try:
        samples = {s: [] for s in servers}
        for rep in range(args.reps):
            for server in servers[rep % len(servers):] + servers[:rep % len(servers)]:
                try:
                    r = run_once(args.build, server, args, tmp, port_pool)
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                    r = dict.fromkeys(KEYS) | {"errors": None, "note": str(e)}
                samples[server].append(r)
                done += 1
                ratio = r["p99_loris_us"] / r["p99_alone_us"] if r["p99_alone_us"] and r["p99_loris_us"] else None
                print(f"slowloris_bench: [{done}/{runs}] {server}: wrk p99 {fmt(r['p99_alone_us'])} us alone, "
                      f"{fmt(r['p99_loris_us'])} us with slowloris (x{fmt(ratio, 2)}); slowloris "
                      f"{fmt(r['got_408'])} got 408, {fmt(r['closed_quietly'])} closed quietly, "
                      f"{fmt(r['still_open'])} still open, last end {fmt(r['last_end_s'], 1)} s"
                      f"{', ' + r['note'] if r['note'] else ''} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        for server in servers:
            row = summary_row({"server": server}, samples[server], KEYS)
            # The ratio of the medians printed beside it (not a median of per-run ratios).
            row["ratio"] = (row["p99_loris_us"] / row["p99_alone_us"]
                            if row["p99_alone_us"] and row["p99_loris_us"] else None)
            rows.append(row)
    finally:
        end_all()
        shutil.rmtree(tmp, ignore_errors=True)

    header = (f"{'server':<13} {'p99 alone us':>12} {'p99 w/ loris':>12} {'ratio':>6} {'req/s alone':>11} "
              f"{'req/s loris':>11} {'opened':>6} {'408':>5} {'closed':>6} {'wrong':>5} {'open':>5} {'last end s':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['server']:<13} {fmt(r['p99_alone_us']):>12} {fmt(r['p99_loris_us']):>12} {fmt(r['ratio'], 2):>6} "
              f"{fmt(r['rps_alone']):>11} {fmt(r['rps_loris']):>11} {fmt(r['opened']):>6} {fmt(r['got_408']):>5} "
              f"{fmt(r['closed_quietly']):>6} {fmt(r['wrong']):>5} {fmt(r['still_open']):>5} {fmt(r['last_end_s'], 1):>10}"
              f"{'  ' + r['notes'] if r['notes'] else ''}")
    print(f"medians of {args.reps}; ratio = the median p99 with slowloris / the median p99 alone (the issue's target: "
          f"<= 2); opened, 408, closed (without a word), wrong (another answer), open: of the {args.loris} slowloris "
          f"connections, after up to {args.loris_wait} s; last end '-': none ended")
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "conns": args.conns, "loris": args.loris, "trickle_ms": args.trickle, "reps": args.reps,
               "server_cpu": args.server_cpu, "load_cpu": args.load_cpu}
    write_results(args.out, "slowloris", rows, machine)
    print(f"slowloris_bench: wrote {args.out}/slowloris.csv and slowloris.json", file=sys.stderr)
    return 1 if any(r["errors"] or r["p99_loris_us"] is None or r["wrong"] for r in rows) else 0


if __name__ == "__main__":
    run_main(main, "slowloris_bench")
