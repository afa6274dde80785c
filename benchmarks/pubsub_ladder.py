#!/usr/bin/env python3
"""The pub/sub ladder: 10k, 100k, 500k verified subscribers over coring-pubsub nodes joined by Redis.

For each backend and rung: one redis-server (its own loopback port, no persistence) is the bus;
coring-pubsub runs as W worker processes on one port (SO_REUSEPORT, `--workers W --bus
redis://...`), W chosen so each worker holds well under the per-process fd limit; coring-load,
in P processes (`--procs`, one shared board: every delivery is checked against what was
published), source addresses spread over 127.1.0.0/16, subscribes the rung's subscribers over
1,000 channels and then publishes through connections that SO_REUSEPORT spreads over the
workers ("publishers through any node"). Server workers and redis-server run on CPU 0,
coring-load on CPU 1 (taskset).

Each rung reports: setup time (until every subscriber is confirmed, all processes); how many
subscribers a first delivery reached (the warmup publishes to every channel at least once);
then steps of --duration at a fixed rate, starting at --rate-start deliveries/s (publishes/s =
deliveries/s / subscribers per channel) and multiplied by --step until a step's p99 end-to-end
latency is over 1 s (coring-load judges it: under 99% of its deliveries within 1 s) or --steps
ran; the knee is the fastest step within 1 s. Lost, duplicated and reordered deliveries (all
must be 0), p50/p99 at the knee, server user memory per subscriber (RssAnon growth of the
workers at "subscribed", with each worker's receive-buffer pool reported apart as ladder.py
does), kernel memory per connection (Slab growth over the same moment; both ends of every
connection are on this machine, so it covers two sockets per connection), and redis-server's
CPU (utime + stime over the steps, as % of one CPU). Everything it starts it stops, by PID,
also on Ctrl-C and errors. Python standard library only; plots need gnuplot.
"""
import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from benchlib import cpu_seconds, end, end_all, fmt, line_plot, ports, spawn, write_results, run_main
from ladder import children, fd_hard_limit, mappings, meminfo_kib, pool_resident, rss_anon_kib

CHANNELS = 1000
BUFFERS, BUFFER_SIZE = 64, 4096       # each worker's receive-buffer pool: --buffers, --buffer-size
PAYLOAD = 64                          # bytes per message
STEP_LIMIT_MS = 1000                  # a step whose p99 is above this ends the rung
MAX_OUTPUT = 256 * 1024 * 1024        # nobody is cut for being slow: a cut would show as lost
KIB_PER_SUBSCRIBER = 24               # pre-flight estimate, both ends: ~10.5 KiB of slab for the two
                                      # sockets (ladder.py), the server's and coring-load's user side


def supports(build, flag):
    """True if coring-pubsub's --help names `flag` (--workers and --bus land with issue 14)."""
    r = subprocess.run([os.path.join(build, "apps/coring-pubsub"), "--help"], capture_output=True, text=True)
    return flag in r.stdout + r.stderr


def probe(port, timeout=1.0):
    """True once a RESP server on port answers PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_up(proc, port, what, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if probe(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer PING on port {port} (exit {proc.poll()})")


def plan(subscribers, fd_limit, bus):
    """(workers, coring-load processes, publishers) for a rung: each process well under the fd limit."""
    per_proc = int(fd_limit * 0.75)  # headroom: SO_REUSEPORT spreads unevenly
    workers = max(1, math.ceil(subscribers / per_proc)) if bus else 1
    publishers = max(4, workers)
    procs = max(1, math.ceil((subscribers + publishers) / per_proc))
    return workers, procs, publishers


def preflight(subscribers, fd_limit, bus):
    """A reason this machine cannot run the rung, or None."""
    if not bus and subscribers > int(fd_limit * 0.75):
        return (f"{subscribers:,} subscribers need more than one coring-pubsub process, and this coring-pubsub "
                f"has no --workers/--bus yet")
    with open("/proc/sys/fs/file-max") as f:
        file_max = int(f.read())
    with open("/proc/sys/fs/file-nr") as f:
        in_use = int(f.read().split()[0])
    need_fds = 2 * subscribers + 5000
    if need_fds > file_max - in_use:
        return f"needs about {need_fds:,} file descriptors (both ends), fs.file-max leaves {file_max - in_use:,}"
    need_kib = subscribers * KIB_PER_SUBSCRIBER
    avail = meminfo_kib("MemAvailable")
    if need_kib > avail * 0.9:
        return (f"needs about {need_kib // 1024:,} MiB (~{KIB_PER_SUBSCRIBER} KiB a subscriber, both ends), "
                f"{avail // 1024:,} MiB available")
    if fd_limit < 2000:
        return f"RLIMIT_NOFILE's hard limit is {fd_limit}: raise it (ulimit -Hn)"
    return None


def end_load(load):
    """Ends coring-load and its --procs children, by PID: its parent only waits for them (it
    runs no runtime and does not pass a SIGTERM on), while each child stops on one."""
    if load.poll() is None:
        for pid in children(load.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    end(load)


def snapshot(pids):
    return {"rss": sum(rss_anon_kib(p) for p in pids), "maps": {p: mappings(p) for p in pids}, "slab": meminfo_kib("Slab")}


def memory(before, after, pids, subscribers, conns):
    """Server user bytes per subscriber (with and without the pools) and kernel bytes per connection."""
    pools = {p: pool_resident(before["maps"][p], after["maps"][p], BUFFERS * BUFFER_SIZE) for p in pids}
    unknown = [f"worker {p}: {why}" for p, (_, kib, why) in pools.items() if kib is None]
    user = (after["rss"] - before["rss"]) * 1024 / subscribers
    row = {"user_bytes_per_sub": user, "kernel_bytes_per_conn": (after["slab"] - before["slab"]) * 1024 / conns,
           "pool_kib": None, "user_bytes_per_sub_excl_pool": None, "pool_note": ""}
    if unknown:
        row["pool_note"] = "pool unknown: " + "; ".join(unknown)
    else:
        grown = sum(k1 - k0 for k0, k1, _ in pools.values())
        row["pool_kib"] = sum(k1 for _, k1, _ in pools.values())
        row["user_bytes_per_sub_excl_pool"] = user - grown * 1024 / subscribers
    return row


def knee(steps):
    """The fastest step whose p99 was within the limit (its verdict "within"), or None."""
    ok = [s for s in steps if s["verdict"] == "within"]
    return max(ok, key=lambda s: s["rate"]) if ok else None


loads = []  # coring-load runs not yet over: their children are ended with them


def end_everything():
    for load in list(loads):
        end_load(load)
        loads.remove(load)
    end_all()


def run_rung(args, backend, subscribers, bus, port_pool, fd_limit, rate_start):
    workers, procs, publishers = plan(subscribers, fd_limit, bus)
    per_channel = subscribers / CHANNELS
    rate = rate_start / per_channel  # publishes/s at the first step
    # The warmup publishes at the first step's rate to every channel at least once (publishers
    # go round-robin from spread starting channels), so every subscriber gets a first delivery.
    warmup = max(1.0, 1.5 * CHANNELS / rate)
    redis = None
    redis_pid = None
    pubsub_cmd = [os.path.join(args.build, "apps/coring-pubsub"), "--cores", "1", "--backend", backend,
                  "--buffers", str(BUFFERS), "--buffer-size", str(BUFFER_SIZE),
                  "--max-output", str(MAX_OUTPUT), "--max-output-soft", f"{MAX_OUTPUT},60"]
    if bus:
        redis_port = port_pool.take()
        redis = spawn(["taskset", "-c", str(args.server_cpu), "redis-server", "--port", str(redis_port), "--bind",
                       "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "1000"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis_pid = redis.pid  # taskset execs redis-server: the pid is the server's
        wait_up(redis, redis_port, "redis-server")
        # Past the knee the workers answer late, the bus included; a long --bus-timeout lets
        # that show as latency (the step's verdict) rather than as PUBLISH errors.
        pubsub_cmd += ["--workers", str(workers), "--bus", f"redis://127.0.0.1:{redis_port}", "--bus-timeout", "30000"]
    port = port_pool.take()
    server = spawn(["taskset", "-c", str(args.server_cpu)] + pubsub_cmd + ["--listen", f"127.0.0.1:{port}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(server, port, "coring-pubsub")
    time.sleep(0.5)  # every worker has bound its listener
    pids = children(server.pid) if workers > 1 else [server.pid]
    if len(pids) != workers:
        raise RuntimeError(f"coring-pubsub has {len(pids)} worker processes, {workers} asked")
    before = snapshot(pids)
    json_path = os.path.join(args.out, f"pubsub-ladder-{backend}-{subscribers}.json")
    if os.path.exists(json_path):
        os.remove(json_path)
    load_cmd = ["taskset", "-c", str(args.load_cpu), os.path.join(args.build, "apps/coring-load"),
                "--protocol", "pubsub", "--target", f"127.0.0.1:{port}", "--subscribers", str(subscribers),
                "--channels", str(CHANNELS), "--publishers", str(publishers), "--size", str(PAYLOAD),
                "--rate", f"{rate:.3f}", "--steps", str(args.steps), "--step-factor", str(args.step),
                "--step-limit", str(STEP_LIMIT_MS), "--duration", str(args.duration), "--warmup", f"{warmup:.1f}",
                "--procs", str(procs), "--bind-range", "127.1.0.1-127.1.255.254", "--connect-parallel", "256",
                "--reply-timeout", "60000", "--setup-limit", "300", "--backend", backend, "--quiet", "--announce-window", "--json", json_path]
    load = spawn(load_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = None
    redis_cpu = []  # (wall s, redis CPU s) at the window's opening and at each step's verdict
    tail = []
    # stderr ends when coring-load exits; a watchdog ends it (by PID) past the rung's time limit.
    loads.append(load)
    watchdog = threading.Timer(args.rung_limit, end_load, [load])
    watchdog.daemon = True
    watchdog.start()
    try:
        for line in load.stderr:  # read as it comes: memory and CPU are sampled at these moments
            line = line.strip()
            if " subscribed " in line and after is None:
                after = snapshot(pids)
                print(f"pubsub-ladder: {backend} {subscribers:,}: {line.split(': ', 1)[1]}; server RssAnon "
                      f"+{(after['rss'] - before['rss']) / 1024:.1f} MiB, Slab "
                      f"+{(after['slab'] - before['slab']) / 1024:.1f} MiB", file=sys.stderr)
            elif line.endswith(": measuring") or ": step " in line:
                if redis_pid:
                    redis_cpu.append((time.monotonic(), cpu_seconds(redis_pid)))
                if ": step " in line:
                    print(f"pubsub-ladder: {backend} {subscribers:,}: {line.split(': ', 1)[1]}", file=sys.stderr)
            elif line and not line.endswith(": measured"):
                tail.append(line)
    finally:
        watchdog.cancel()
    rc = load.wait()
    loads.remove(load)
    alive = server.poll() is None
    end(server)
    if redis:
        end(redis)
    if not os.path.exists(json_path):
        raise RuntimeError(f"coring-load wrote no result (exit {rc}): {tail[-1] if tail else ''}")
    with open(json_path) as f:
        r = json.load(f)
    k = knee(r["steps"])
    conns = subscribers + publishers + (workers if bus else 0)  # + each worker's bus connection
    row = {"backend": backend, "subscribers": subscribers, "workers": workers, "load_procs": procs,
           "publishers": publishers, "setup_s": r["setup_s"], "subscribed": r["subscribed"], "reached": r["reached"],
           "lost": r["lost"], "duplicated": r["duplicated"], "reordered": r["reordered"], "errors": r["errors"]["total"],
           "knee_deliveries_per_sec": k["deliveries_per_sec"] if k else None,
           "knee_asked_deliveries_per_sec": k["rate"] * per_channel if k else None,
           "knee_p50_us": k["p50_us"] if k else None, "knee_p99_us": k["p99_us"] if k else None,
           "steps": r["steps"], "redis_cpu_pct": None, "note": ""}
    if len(redis_cpu) >= 2:
        (w0, c0), (w1, c1) = redis_cpu[0], redis_cpu[-1]
        row["redis_cpu_pct"] = 100 * (c1 - c0) / (w1 - w0) if w1 > w0 else None
    row.update(memory(before, after, pids, subscribers, conns) if after else
               {"user_bytes_per_sub": None, "kernel_bytes_per_conn": None, "pool_kib": None,
                "user_bytes_per_sub_excl_pool": None, "pool_note": ""})
    notes = []
    if rc != 0:
        notes.append(r.get("first_error") or (tail[-1] if tail else f"coring-load exit {rc}"))
    if not alive:
        notes.append("coring-pubsub died during the rung")
    if r["steps"] and not k:
        notes.append(f"even the first step's p99 (at {rate_start:,.0f} deliveries/s) was over {STEP_LIMIT_MS} ms")
    if r["steps"] and r["steps"][-1]["verdict"] == "within":
        notes.append(f"the last step ({args.steps}) was still within 1 s: the knee is higher")
    for s in r["steps"]:  # an open-loop generator that falls behind sends less than asked
        if s["verdict"] != "not run" and s["publishes_per_sec"] < 0.9 * s["rate"]:
            notes.append(f"coring-load sent {s['publishes_per_sec']:.0f} of {s['rate']:.0f} publishes/s asked: load-bound")
            break
    row["note"] = "; ".join(notes)
    return row


COLUMNS = ["backend", "subscribers", "workers", "load_procs", "publishers", "setup_s", "subscribed", "reached",
           "knee_deliveries_per_sec", "knee_asked_deliveries_per_sec", "knee_p50_us", "knee_p99_us", "lost",
           "duplicated", "reordered", "errors", "user_bytes_per_sub", "pool_kib", "user_bytes_per_sub_excl_pool",
           "kernel_bytes_per_conn", "redis_cpu_pct", "note", "pool_note"]  # the CSV's (the JSON adds each step)


def plot(out, rows, backends):
    pngs = []
    for metric, label in (("knee_deliveries_per_sec", "knee: deliveries/s with p99 <= 1 s"),
                          ("user_bytes_per_sub", "server user-space bytes per subscriber"),
                          ("kernel_bytes_per_conn", "kernel bytes per connection (both ends)"),
                          ("redis_cpu_pct", "redis-server CPU (% of one CPU)")):
        series = [(b, [(r["subscribers"], r[metric]) for r in rows if r["backend"] == b and r.get(metric) is not None])
                  for b in backends]
        if not any(points for _, points in series):  # e.g. no redis-server CPU without a bus
            continue
        png = os.path.join(out, f"pubsub-ladder-{metric}.png")
        if line_plot(os.path.join(out, f"pubsub-ladder-{metric}.dat"), png, f"{label} vs subscribers", "subscribers",
                     label, series):
            pngs.append(png)
    return pngs


def print_table(rows):
    hdr = (f"{'backend':<7} {'subs':>7} {'W':>3} {'P':>3} {'setup s':>8} {'reached':>15} {'knee deliv/s':>12} "
           f"{'p50 us':>9} {'p99 us':>10} {'lost/dup/reord':>14} {'user B/sub':>10} {'excl. pool':>10} "
           f"{'kernel B/conn':>13} {'redis CPU%':>10}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        reached = f"{r['reached']:,}/{r['subscribers']:,}" if r.get("reached") is not None else "-"
        bad = f"{r['lost']}/{r['duplicated']}/{r['reordered']}" if r.get("lost") is not None else "-"
        print(f"{r['backend']:<7} {r['subscribers']:>7,} {r.get('workers', '-'):>3} {r.get('load_procs', '-'):>3} "
              f"{fmt(r.get('setup_s'), 1):>8} {reached:>15} {fmt(r.get('knee_deliveries_per_sec')):>12} "
              f"{fmt(r.get('knee_p50_us')):>9} {fmt(r.get('knee_p99_us')):>10} {bad:>14} "
              f"{fmt(r.get('user_bytes_per_sub')):>10} {fmt(r.get('user_bytes_per_sub_excl_pool')):>10} "
              f"{fmt(r.get('kernel_bytes_per_conn')):>13} {fmt(r.get('redis_cpu_pct'), 1):>10}"
              + "".join("  " + n for n in (r.get("note"), r.get("pool_note")) if n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with coring-pubsub and coring-load")
    ap.add_argument("--out", default="build/bench-results", help="where CSV, JSON and plots go")
    ap.add_argument("--rungs", default="10000,100000,500000", help="comma-separated subscriber counts")
    ap.add_argument("--backends", default="uring", help="comma-separated: uring, epoll (default uring only, for time)")
    ap.add_argument("--rate-start", type=float, default=100_000, help="deliveries/s of the first step")
    ap.add_argument("--step", type=float, default=1.5, help="each step's rate is the last one's times this")
    ap.add_argument("--steps", type=int, default=8, help="at most this many steps per rung (the time cap)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds each step is measured")
    ap.add_argument("--rung-limit", type=float, default=600, help="seconds a rung may take before it is ended")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    rungs = [int(x) for x in args.rungs.split(",")]
    backends = args.backends.split(",")
    for tool in ("apps/coring-pubsub", "apps/coring-load"):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            sys.exit(f"pubsub-ladder: {args.build}/{tool} not built")
    bus = supports(args.build, "--bus") and supports(args.build, "--workers")
    if bus and not shutil.which("redis-server"):
        sys.exit("pubsub-ladder: redis-server not installed (apt-get install redis-server)")
    fd_limit = fd_hard_limit()
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))  # children inherit it
    os.makedirs(args.out, exist_ok=True)
    port_pool = ports()
    print(f"pubsub-ladder: rungs {', '.join(f'{n:,}' for n in rungs)} subscribers over {CHANNELS:,} channels, "
          f"{', '.join(backends)}; coring-pubsub workers and redis-server on CPU {args.server_cpu}, coring-load on CPU "
          f"{args.load_cpu}; steps of {args.duration} s from {args.rate_start:,.0f} deliveries/s x{args.step}, "
          f"at most {args.steps}, until p99 > {STEP_LIMIT_MS} ms; fd limit {fd_limit:,} per process"
          + ("" if bus else "; this coring-pubsub has no --bus/--workers: one process, no redis-server"), file=sys.stderr)
    rows = []
    try:
        for backend in backends:
            for n in rungs:
                why = preflight(n, fd_limit, bus)
                if why:
                    print(f"pubsub-ladder: {backend} {n:,}: not run: {why}", file=sys.stderr)
                    rows.append({"backend": backend, "subscribers": n, "note": "pre-flight: " + why})
                    continue
                print(f"pubsub-ladder: {backend} {n:,} subscribers ...", file=sys.stderr)
                started = time.monotonic()
                rate_start, tries = args.rate_start, []
                while True:
                    try:
                        row = run_rung(args, backend, n, bus, port_pool, fd_limit, rate_start)
                    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
                        row = {"backend": backend, "subscribers": n, "note": str(e)}
                    finally:
                        end_everything()  # whatever of the rung still runs
                    # Over 1 s from the very first step: the knee is lower. The rung runs again
                    # from half the rate (at most twice), so that it is found, not just bounded.
                    if row.get("knee_deliveries_per_sec") is not None or not row.get("steps") or len(tries) == 2:
                        break
                    tries.append(rate_start)
                    rate_start /= 2
                    print(f"pubsub-ladder: {backend} {n:,}: over 1 s from the first step; again from "
                          f"{rate_start:,.0f} deliveries/s", file=sys.stderr)
                    time.sleep(2)
                if tries:
                    row["note"] = "; ".join(x for x in [f"over 1 s from {', '.join(f'{t:,.0f}' for t in tries)} "
                                                        f"deliveries/s: stepped from {rate_start:,.0f}", row.get("note")] if x)
                print(f"pubsub-ladder: {backend} {n:,}: done in {time.monotonic() - started:.0f} s"
                      + (f": {row['note']}" if row.get("note") else ""), file=sys.stderr)
                rows.append(row)
                time.sleep(2)  # closed sockets leave the kernel's lists
    finally:
        end_everything()  # Ctrl-C or an error mid-run: nothing of ours outlives us
    print_table(rows)
    print(f"(coring-pubsub workers and redis-server on CPU {args.server_cpu}, coring-load on CPU {args.load_cpu}; "
          "kernel memory covers both ends of each connection, all on this machine; knee = fastest step with p99 <= 1 s)")
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "channels": CHANNELS, "payload": PAYLOAD, "rate_start": args.rate_start, "step": args.step,
               "steps": args.steps, "duration_s": args.duration, "server_cpu": args.server_cpu,
               "load_cpu": args.load_cpu, "bus": bus}
    write_results(args.out, "pubsub-ladder", [{k: r.get(k) for k in COLUMNS} for r in rows], machine)
    with open(os.path.join(args.out, "pubsub-ladder.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)  # with each rung's steps
    pngs = plot(args.out, [r for r in rows if "knee_deliveries_per_sec" in r], backends)
    print(f"pubsub-ladder: wrote {args.out}/pubsub-ladder.csv, pubsub-ladder.json"
          + (f" and {len(pngs)} plots" if pngs else ""), file=sys.stderr)
    ok = all(r.get("errors") == 0 and r.get("lost") == 0 and r.get("duplicated") == 0 and r.get("reordered") == 0
             and r.get("reached") == r["subscribers"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main, "pubsub-ladder")
