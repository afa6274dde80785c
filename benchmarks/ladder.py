#!/usr/bin/env python3
"""The C10K..C1M ladder: how many verified idle connections coring-echo holds, and what each costs.

For each backend and rung: coring-echo runs as W worker processes (the per-process fd limit is
below the rung) on one CPU; coring-load, on the other CPU, in P processes with source addresses
spread over 127.1.0.0/16, opens the rung's idle connections (each proven by an echo round trip),
verifies a sample again (all of them up to 100k, at least 10k above), prints 'holding', and then
runs an active set of 1,000 connections doing ping-pong at a fixed rate (open loop, 10,000
messages/s in all, so the latency is comparable from rung to rung) while the rest idle. At 'holding' this
script reads the server's memory: user space is the workers' RssAnon growth since start-up,
kernel is the growth of Slab in /proc/meminfo (both ends of every connection are on this
machine, so it covers two sockets per connection). Part of the RssAnon growth is each worker's
receive-buffer pool (one anonymous mapping of exactly buffers x buffer size bytes per core),
which is shared by all of a worker's connections, not held per connection: its resident size
comes from /proc/PID/smaps at start-up and at 'holding', and is reported on its own and
subtracted in "user B/conn excl. pool". Everything it starts it stops, by PID.
Python standard library only; plots need gnuplot.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

from benchlib import line_plot, stop

BUFFERS, BUFFER_SIZE = 64, 4096  # each worker's receive-buffer pool: --buffers, --buffer-size


def meminfo_kib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_anon_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def mappings(pid):
    """[[start, end, resident KiB]] for each mapping (VMA) of pid, from /proc/PID/smaps; [] if it is gone."""
    vmas = []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                key = line.split(None, 1)[0]
                if key == "Rss:":
                    vmas[-1][2] = int(line.split()[1])
                elif not key.endswith(":"):  # a mapping's first line: start-end perms offset dev inode [path]
                    vmas.append([int(x, 16) for x in key.split("-")] + [0])
    except FileNotFoundError:
        pass
    return vmas


def pool_resident(before, after, size):
    """One worker's receive-buffer pool: (KiB resident at start-up, KiB at 'holding', remark).
    The pool is the one mapping of exactly `size` bytes at 'holding'; any other count is reported
    as unknown (None, None, why) rather than guessed. It is mapped on the first receive
    (net/tcp.cpp), so at start-up its addresses are normally unmapped: 0 KiB, remark "unmapped"."""
    pools = [v for v in after if v[1] - v[0] == size]
    if len(pools) != 1:
        return None, None, f"{len(pools)} mappings of {size // 1024} KiB"
    start, end, kib = pools[0]
    for v in before:
        if v[:2] == [start, end]:
            return v[2], kib, None
        if v[0] < end and start < v[1]:  # merged into, or replaced, another mapping since: not comparable
            return None, None, f"its addresses were another mapping at start-up ({(v[1] - v[0]) // 1024} KiB)"
    return 0, kib, "unmapped"


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def fd_hard_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def preflight(conns):
    """A reason this machine cannot hold `conns` connections (both ends here), or None."""
    with open("/proc/sys/fs/file-max") as f:
        file_max = int(f.read())
    with open("/proc/sys/fs/file-nr") as f:
        in_use = int(f.read().split()[0])
    need_fds = 2 * conns + 5000
    if need_fds > file_max - in_use:
        return f"needs about {need_fds:,} file descriptors, fs.file-max leaves {file_max - in_use:,}"
    need_kib = conns * 12  # measured: ~10.5 KiB of slab for both sockets, ~1.5 KiB both user sides
    avail = meminfo_kib("MemAvailable")
    if need_kib > avail * 0.9:
        return f"needs about {need_kib // 1024:,} MiB (~12 KiB a connection), {avail // 1024:,} MiB available"
    return None


def run_rung(args, backend, rung, port):
    per_proc = int(fd_hard_limit() * 0.75)  # headroom: SO_REUSEPORT spreads unevenly
    total = rung + args.active
    workers = max(1, math.ceil(total / per_proc))
    procs = max(1, math.ceil(total / per_proc))
    stride = 1 if rung <= 100_000 else max(1, rung // args.sample)
    server_cmd = ["taskset", "-c", str(args.server_cpu), os.path.join(args.build, "apps/coring-echo"),
                  "--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--cores", "1", "--backend", backend,
                  "--buffers", str(BUFFERS), "--buffer-size", str(BUFFER_SIZE), "--drain-timeout", "2000"]
    server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if "listening on" in line:
                break
            if not line and server.poll() is not None:
                raise RuntimeError(f"coring-echo exited at start (status {server.returncode})")
        time.sleep(0.5)  # every worker has bound its listener
        pids = children(server.pid) or [server.pid]
        rss0 = sum(rss_anon_kib(p) for p in pids)
        maps0 = {p: mappings(p) for p in pids}
        slab0 = meminfo_kib("Slab")
        json_path = os.path.join(args.out, f"ladder-{backend}-{rung}.json")
        load_cmd = ["taskset", "-c", str(args.load_cpu), os.path.join(args.build, "apps/coring-load"),
                    "--target", f"127.0.0.1:{port}", "--idle", str(rung), "--verify-every", str(stride),
                    "--conns", str(args.active), "--depth", "1", "--size", "64", "--duration", str(args.duration),
                    "--rate", str(args.rate),
                    "--warmup", "1", "--procs", str(procs), "--bind-range", "127.1.0.1-127.1.255.254",
                    "--connect-parallel", "256", "--reply-timeout", "60000", "--backend", backend,
                    "--quiet", "--json", json_path]
        started = time.monotonic()
        load = subprocess.Popen(load_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rss1 = slab1 = pool0 = pool1 = None
        pool_note = ""  # why the pool is unknown
        tail = []
        for line in load.stderr:
            if "holding" in line and rss1 is None:
                rss1 = sum(rss_anon_kib(p) for p in pids)
                maps1 = {p: mappings(p) for p in pids}
                slab1 = meminfo_kib("Slab")
                pools = {p: pool_resident(maps0[p], maps1[p], BUFFERS * BUFFER_SIZE) for p in pids}
                unknown = [f"worker {p}: {why}" for p, (_, kib, why) in pools.items() if kib is None]
                if unknown:
                    pool_note = "pool unknown: " + "; ".join(unknown)
                    pool_said = pool_note
                else:
                    pool0 = sum(k0 for k0, _, _ in pools.values())
                    pool1 = sum(k1 for _, k1, _ in pools.values())
                    unmapped = sum(why == "unmapped" for _, _, why in pools.values())
                    pool_said = (f"pool {pool0:,} -> {pool1:,} KiB resident" +
                                 (f" (not yet mapped at start-up in {unmapped} of {len(pids)} workers)" if unmapped else ""))
                print(f"ladder: {backend} {rung:,}: holding after {time.monotonic() - started:.0f} s; "
                      f"server RssAnon +{(rss1 - rss0) / 1024:.1f} MiB, Slab +{(slab1 - slab0) / 1024:.1f} MiB, "
                      f"{pool_said}", file=sys.stderr)
            else:
                tail.append(line.strip())
        rc = load.wait()
        with open(json_path) as f:
            r = json.load(f)
        alive = server.poll() is None
        return {
            "backend": backend, "rung": rung, "workers": workers, "load_procs": procs,
            "setup_s": r["setup_s"], "idle_up": r["idle_up"], "verified": r["idle_verified"], "sampled": r["idle_sampled"],
            "user_bytes_per_conn": (rss1 - rss0) * 1024 / rung if rss1 is not None else None,
            "pool_kib_start": pool0, "pool_kib": pool1, "pool_note": pool_note,
            "user_bytes_per_conn_excl_pool":
                ((rss1 - rss0) - (pool1 - pool0)) * 1024 / rung if pool1 is not None else None,
            "kernel_bytes_per_conn": (slab1 - slab0) * 1024 / rung if slab1 is not None else None,
            "active_p50_us": r["latency_us"]["p50"], "active_p99_us": r["latency_us"]["p99"],
            "active_msgs_per_sec": r["msgs_per_sec"], "errors": r["errors"]["total"],
            "note": "" if rc == 0 and alive else (r.get("first_error") or (tail[-1] if tail else f"exit {rc}")),
        }
    finally:
        stop(server, timeout=30)


def plot(out, rows, backends):
    pngs = []
    for metric, label in (("user_bytes_per_conn", "server user-space bytes per connection"),
                          ("user_bytes_per_conn_excl_pool", "server user-space bytes per connection, excl. buffer pool"),
                          ("kernel_bytes_per_conn", "kernel bytes per connection (both ends)"),
                          ("active_p99_us", "p99 of 1,000 active connections (us)")):
        series = [(b, [(r["rung"], r[metric]) for r in rows if r["backend"] == b and r.get(metric) is not None])
                  for b in backends]
        png = os.path.join(out, f"ladder-{metric}.png")
        if line_plot(os.path.join(out, f"ladder-{metric}.dat"), png, f"{label} vs idle connections",
                     "idle connections", label, series):
            pngs.append(png)
    return pngs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release")
    ap.add_argument("--out", default="build/bench-results")
    ap.add_argument("--rungs", default="10000,100000,500000,1000000")
    ap.add_argument("--backends", default="uring,epoll")
    ap.add_argument("--active", type=int, default=1000, help="connections doing ping-pong at each rung")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds the active set is measured")
    ap.add_argument("--rate", type=float, default=10_000,
                    help="messages/s of the active set in all (open loop: latency from the intended send time)")
    ap.add_argument("--sample", type=int, default=10_000, help="idle connections verified again above 100k")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    rungs = [int(x) for x in args.rungs.split(",")]
    backends = args.backends.split(",")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    port = 20000 + os.getpid() % 10000  # below the ephemeral range (32768+)
    for backend in backends:
        for rung in rungs:
            why = preflight(rung + args.active)
            if why:
                print(f"ladder: {backend} {rung:,}: stopped before starting: {why}", file=sys.stderr)
                rows.append({"backend": backend, "rung": rung, "note": "pre-flight: " + why, "errors": None,
                             "user_bytes_per_conn": None, "kernel_bytes_per_conn": None, "active_p99_us": None})
                break  # the higher rungs need more still
            port += 1
            print(f"ladder: {backend} {rung:,} idle connections ...", file=sys.stderr)
            try:
                row = run_rung(args, backend, rung, port)
            except Exception as e:
                row = {"backend": backend, "rung": rung, "note": str(e), "errors": None,
                       "user_bytes_per_conn": None, "kernel_bytes_per_conn": None, "active_p99_us": None}
            rows.append(row)
            print(f"ladder: {backend} {rung:,}: {json.dumps(row)}", file=sys.stderr)
            time.sleep(2)  # closed sockets leave the kernel's lists
    hdr = (f"{'backend':<7} {'idle conns':>10} {'setup s':>8} {'verified':>17} {'user B/conn':>11} "
           f"{'pool KiB':>8} {'user B/conn excl. pool':>22} {'kernel B/conn':>13} "
           f"{'p50 us':>8} {'p99 us':>8} {'errors':>6}")
    print(hdr)
    print("-" * len(hdr))
    f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
    for r in rows:
        ver = f"{r['verified']:,}/{r['sampled']:,}" if "verified" in r else "-"
        print(f"{r['backend']:<7} {r['rung']:>10,} {f(r.get('setup_s'), 1):>8} {ver:>17} {f(r['user_bytes_per_conn']):>11} "
              f"{f(r.get('pool_kib')):>8} {f(r.get('user_bytes_per_conn_excl_pool')):>22} "
              f"{f(r['kernel_bytes_per_conn']):>13} {f(r.get('active_p50_us'), 1):>8} {f(r['active_p99_us'], 1):>8} "
              f"{f(r['errors']):>6}" + "".join("  " + n for n in (r.get("note"), r.get("pool_note")) if n))
    for b in backends:
        mine = [r for r in rows if r["backend"] == b and r.get("active_p99_us")]
        if len(mine) >= 2:
            print(f"{b}: p99 at {mine[-1]['rung']:,} idle / p99 at {mine[0]['rung']:,} idle = "
                  f"{mine[-1]['active_p99_us'] / mine[0]['active_p99_us']:.2f}")
    with open(os.path.join(args.out, "ladder.json"), "w") as fo:
        json.dump(rows, fo, indent=1)
    pngs = plot(args.out, rows, backends)
    print(f"ladder: wrote {args.out}/ladder.json" + (f" and {len(pngs)} plots" if pngs else ""), file=sys.stderr)
    return 0 if all(r.get("errors") == 0 and not r.get("note") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
