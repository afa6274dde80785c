#!/usr/bin/env python3
"""Pub/sub fan-out: coring-pubsub (io_uring and epoll on one core, and two cores) vs redis-server
and nats-server, and the raw io_uring floor (benchmarks/baselines/raw_uring_pubsub.cpp: RESP
SUBSCRIBE/PUBLISH from liburing alone, one send per subscriber per loop turn).

Every server is started afresh for each run with its own configuration on a loopback port, pinned
with taskset to --server-cpu (CPU 0); coring-load drives it from --load-cpu (CPU 1): S subscribers
over K channels, one publisher in a closed loop keeping --depth publishes unanswered, so the
server is the bottleneck; every delivery is verified (lost, duplicated, reordered). coring-pubsub
with 2 cores runs on CPUs 0 and 1, so it shares the load generator's CPU: its cells say
"load-generator-bound?". Servers take turns within each round (the order rotates); each cell
reports the median over the rounds of deliveries/s, the server's CPU time (utime + stime from
/proc/PID/stat, read as coring-load opens and closes its measured window) per delivery, p99
latency and the deliveries lost. Table and ratios to stdout, CSV and JSON (and gnuplot PNGs when
gnuplot is there) to --out. Python standard library only.
"""
import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import (end, end_all, fmt, line_plot, load_result, ports, run_main, run_note, spawn, summary_row, window_cpu,
                      write_results)

SERVERS = ["coring-uring", "coring-epoll", "coring-2cores", "redis", "nats", "raw-uring"]
RAW = "benchmarks/baselines/baseline-raw-uring-pubsub"
# What a server may hold for one subscriber before cutting it: far more than a run queues, so
# nobody is cut (a cut subscriber's losses would show as lost). The same for all three.
MAX_OUTPUT = 256 * 1024 * 1024
MAX_CLIENTS = 20000  # redis-server's --maxclients: 10,000 subscribers and room to spare

def protocol_of(server):
    return "nats" if server == "nats" else "pubsub"


def nats_conf(tmp, port):
    path = os.path.join(tmp, f"nats-{port}.conf")
    with open(path, "w") as f:
        f.write(f"""# Written by benchmarks/pubsub_bench.py for one run.
listen: 127.0.0.1:{port}
max_pending: {MAX_OUTPUT}
write_deadline: "60s"
max_connections: {MAX_CLIENTS}
""")
    return path


def server_command(build, name, port, tmp):
    if name.startswith("coring-"):
        cores, backend = ("2", "uring") if name == "coring-2cores" else ("1", name.split("-")[1])
        return [os.path.join(build, "apps/coring-pubsub"), "--listen", f"127.0.0.1:{port}", "--cores", cores,
                "--backend", backend, "--max-output", str(MAX_OUTPUT), "--max-output-soft", f"{MAX_OUTPUT},60"]
    if name == "redis":
        limit = f"{MAX_OUTPUT // (1024 * 1024)}mb"
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--maxclients", str(MAX_CLIENTS), "--client-output-buffer-limit", f"pubsub {limit} {limit} 0"]
    if name == "nats":
        return ["nats-server", "-c", nats_conf(tmp, port)]
    if name == "raw-uring":
        return [os.path.join(build, RAW), "--port", str(port)]
    raise ValueError(name)


def available(build, name):
    """Why the server cannot run here, or None."""
    if name.startswith("coring-") or name == "raw-uring":
        path = os.path.join(build, RAW if name == "raw-uring" else "apps/coring-pubsub")
        return None if os.access(path, os.X_OK) else f"{path} not built"
    binary = "redis-server" if name == "redis" else "nats-server"
    return None if shutil.which(binary) else f"{binary} not installed"


def probe(port, name, timeout=1.0):
    """True once the server answers as its protocol says: RESP PING -> +PONG, NATS's INFO line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if name != "nats":
                s.sendall(b"PING\r\n")
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n" not in data and len(data) < 65536 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"INFO " if name == "nats" else b"+PONG")
    except OSError:
        return False


def start_server(build, name, port, args, tmp):
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    cpus = f"{args.server_cpu},{args.load_cpu}" if name == "coring-2cores" else str(args.server_cpu)
    proc = spawn(["taskset", "-c", cpus] + server_command(build, name, port, tmp), stdout=log, stderr=log)
    log.close()  # taskset execs the server: proc.pid is the server's
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if probe(port, name):
            return proc
        time.sleep(0.05)
    end(proc)
    with open(os.path.join(tmp, f"{name}.log")) as f:
        said = " / ".join(line.strip() for line in f.readlines()[-3:])
    raise RuntimeError(f"{name} did not start (exit {proc.returncode}): {said or 'no output'}")


def run_once(build, server, cell, args, tmp, port_pool):
    port = port_pool.take()
    proc = start_server(build, server, port, args, tmp)
    json_path = os.path.join(tmp, "coring-load.json")
    if os.path.exists(json_path):
        os.remove(json_path)
    cmd = ["taskset", "-c", str(args.load_cpu), os.path.join(build, "apps/coring-load"), "--protocol", protocol_of(server),
           "--target", f"127.0.0.1:{port}", "--subscribers", str(cell["subscribers"]), "--channels", str(args.channels),
           "--publishers", "1", "--depth", str(args.depth), "--size", str(cell["size"]), "--duration", str(args.seconds),
           "--warmup", str(args.warmup), "--backend", "uring", "--cores", "1", "--quiet", "--announce-window",
           "--json", json_path]
    try:
        load = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # Subscribing 10,000 connections takes a while before the window opens.
            cpu, rc, other = window_cpu(load, proc.pid, timeout=args.warmup + args.seconds + 180)
        finally:
            end(load)
        if proc.poll() is not None:
            raise RuntimeError(f"{server} died during the run (exit {proc.returncode})")
    finally:
        end(proc)
    r = load_result(json_path, rc, other)
    deliveries = r["messages"]
    return {"deliveries_per_sec": r["deliveries_per_sec"], "publishes_per_sec": r["publishes_per_sec"],
            "p99_us": r["latency_us"]["p99"], "lost": r["lost"] + r["duplicated"] + r["reordered"],
            "cpu_ns_per_delivery": cpu * 1e9 / deliveries if cpu is not None and deliveries else None,
            "errors": r["errors"]["total"] + r["lost"] + r["duplicated"] + r["reordered"],
            "note": run_note(rc, other, cpu)}


def raise_fd_limit(subscribers):
    """The servers inherit our RLIMIT_NOFILE: as high as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(subscribers) + 100
    if hard < need:
        print(f"pubsub_bench: RLIMIT_NOFILE is {hard}, {max(subscribers):,} subscribers need about {need:,} per "
              f"process (raise it: ulimit -Hn)", file=sys.stderr)


def print_ratios(rows):
    """Per row: coring's CPU per delivery and deliveries/s over redis-server's and nats-server's
    (the issue's targets: CPU/delivery <= 0.6x redis at 1,000 and 10,000 subscribers with 64 B,
    <= 0.5x with 1 KiB; 2 cores >= 2x redis's deliveries/s)."""
    index = {(r["server"], r["subscribers"], r["size"]): r for r in rows}
    print("\nratios (this run, medians; CPU per delivery below 1 means cheaper than the baseline):")
    for (server, subs, size), r in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        if not server.startswith("coring-"):
            continue
        parts = []
        for base in ("redis", "nats", "raw-uring"):
            b = index.get((base, subs, size))
            if not b:
                continue
            if r["cpu_ns_per_delivery"] and b["cpu_ns_per_delivery"]:
                parts.append(f"cpu/delivery vs {base} {r['cpu_ns_per_delivery'] / b['cpu_ns_per_delivery']:.2f}")
            if r["deliveries_per_sec"] and b["deliveries_per_sec"]:
                parts.append(f"deliveries/s vs {base} {r['deliveries_per_sec'] / b['deliveries_per_sec']:.2f}")
        if parts:
            mark = " (load-generator-bound?)" if server == "coring-2cores" else ""
            print(f"  {subs:>6,} subs, {size:>5} B, {server}{mark}: " + "; ".join(parts))


def plot(out, rows, servers):
    written = []
    for size in sorted({r["size"] for r in rows}):
        sel = [r for r in rows if r["size"] == size]
        if len({r["subscribers"] for r in sel}) < 2:
            continue
        for metric, label in (("deliveries_per_sec", "deliveries/s"), ("cpu_ns_per_delivery", "server CPU ns per delivery")):
            series = [(s, [(r["subscribers"], r[metric]) for r in sorted(sel, key=lambda r: r["subscribers"])
                           if r["server"] == s and r[metric] is not None]) for s in servers]
            png = os.path.join(out, f"pubsub-{metric}-{size}B.png")
            if line_plot(os.path.join(out, f"pubsub-plot-{metric}-{size}B.dat"), png,
                         f"{label} vs subscribers ({size} B payload)", "subscribers", label, series):
                written.append(png)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with the binaries")
    ap.add_argument("--out", default="build/bench-results", help="where CSV, JSON and plots go")
    ap.add_argument("--servers", help="comma-separated subset of " + ", ".join(SERVERS))
    ap.add_argument("--subscribers", default="100,1000,10000", help="comma-separated subscriber counts")
    ap.add_argument("--sizes", default="64,1024", help="comma-separated payload sizes (bytes)")
    ap.add_argument("--channels", type=int, default=10, help="channels the subscribers spread over")
    ap.add_argument("--depth", type=int, default=16, help="publishes the publisher keeps unanswered")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (each server once per round, order rotating)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each window")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    subscribers, sizes = ints(args.subscribers), ints(args.sizes)
    servers = args.servers.split(",") if args.servers else list(SERVERS)
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"pubsub_bench: unknown server {s} (known: {', '.join(SERVERS)})")
    for s in list(servers):
        why = available(args.build, s)
        if why:
            print(f"pubsub_bench: skipping {s}: {why}", file=sys.stderr)
            servers.remove(s)
    if not servers:
        sys.exit("pubsub_bench: no server to run")
    if not os.access(os.path.join(args.build, "apps/coring-load"), os.X_OK):
        sys.exit(f"pubsub_bench: {args.build}/apps/coring-load not built")
    raise_fd_limit(subscribers)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="coring-pubsub-bench.")
    port_pool = ports()

    cells = [{"subscribers": n, "size": z} for z in sizes for n in subscribers]
    runs = len(cells) * len(servers) * args.rounds
    print(f"pubsub_bench: {len(servers)} servers (at most) x {len(cells)} cells x {args.rounds} rounds = {runs} runs of "
          f"{args.warmup}+{args.seconds} s; server on CPU {args.server_cpu}, coring-load on CPU {args.load_cpu}; "
          f"{args.channels} channels, 1 publisher at depth {args.depth}", file=sys.stderr)
    rows = []
    try:
        # Each server once before anything is measured: one that cannot start is left out.
        for s in list(servers):
            try:
                end(start_server(args.build, s, port_pool.take(), args, tmp))
            except RuntimeError as e:
                print(f"pubsub_bench: skipping {s}: {e}", file=sys.stderr)
                servers.remove(s)
        if not servers:
            sys.exit("pubsub_bench: no server could start")
        done = 0
        started = time.monotonic()
        for cell in cells:
            samples = {s: [] for s in servers}
            for rnd in range(args.rounds):
                order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
                for server in order:
                    try:
                        r = run_once(args.build, server, cell, args, tmp, port_pool)
                    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                        r = {"deliveries_per_sec": None, "publishes_per_sec": None, "p99_us": None, "lost": None,
                             "cpu_ns_per_delivery": None, "errors": None, "note": str(e)}
                    if server == "coring-2cores":
                        r["note"] = "; ".join(x for x in (r["note"], "load-generator-bound? (shares CPU "
                                                          f"{args.load_cpu} with coring-load)") if x)
                    samples[server].append(r)
                    done += 1
                    print(f"pubsub_bench: [{done}/{runs}] {cell['subscribers']:,} subs, {cell['size']} B, {server}: "
                          f"{fmt(r['deliveries_per_sec'])} deliveries/s, cpu {fmt(r['cpu_ns_per_delivery'])} ns/delivery, "
                          f"p99 {fmt(r['p99_us'])} us, lost {fmt(r['lost'])}{', ' + r['note'] if r['note'] else ''} "
                          f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
            for server in servers:
                row = summary_row(dict(cell, server=server), samples[server],
                                  ("deliveries_per_sec", "publishes_per_sec", "cpu_ns_per_delivery", "p99_us"))
                row["lost"] = sum(r["lost"] or 0 for r in samples[server])
                rows.append(row)
    finally:
        end_all()  # Ctrl-C or an error mid-run: nothing of ours outlives us
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(13, *(len(s) for s in servers))
    header = (f"{'subs':>6} {'size':>5} {'server':<{width}} {'deliveries/s (min..max)':>34} {'cpu ns/deliv':>12} "
              f"{'p99 us':>9} {'lost':>5} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        rng = f"{fmt(r['deliveries_per_sec'])} ({fmt(r['deliveries_per_sec_min'])}..{fmt(r['deliveries_per_sec_max'])})"
        print(f"{r['subscribers']:>6} {r['size']:>5} {r['server']:<{width}} {rng:>34} {fmt(r['cpu_ns_per_delivery']):>12} "
              f"{fmt(r['p99_us'], 1):>9} {r['lost']:>5} {r['errors']:>6}{'  ' + r['notes'] if r['notes'] else ''}")
    print_ratios(rows)
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "seconds": args.seconds, "warmup_s": args.warmup, "rounds": args.rounds, "channels": args.channels,
               "depth": args.depth, "server_cpu": args.server_cpu, "load_cpu": args.load_cpu, "max_output": MAX_OUTPUT}
    write_results(args.out, "pubsub", rows, machine)
    pngs = plot(args.out, rows, servers)
    print(f"\npubsub_bench: wrote {args.out}/pubsub.csv, pubsub.json" + (f" and {len(pngs)} plots" if pngs else ""),
          file=sys.stderr)
    return 1 if any(r["errors"] or r["deliveries_per_sec"] is None for r in rows) else 0


if __name__ == "__main__":
    run_main(main, "pubsub_bench")
