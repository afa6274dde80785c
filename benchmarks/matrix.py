#!/usr/bin/env python3
"""The io_uring-vs-epoll benchmark matrix: servers x connections x message sizes x depths.

Every cell runs each server in turn (the order rotates each repetition, so drift hits all alike),
the server pinned to one CPU and coring-load to another. Per run: msgs/s and p50/p99 from
coring-load (every reply verified), and the server's CPU time per message, read from
/proc/PID/stat exactly when coring-load's measured window opens and closes: the fair figure when
the load generator, not the server, is the bottleneck. Each cell reports the median of its
repetitions with min..max. Writes a table to stdout, CSV, JSON and gnuplot PNGs to --out.
Python standard library only (Debian's python3); plots need gnuplot (Debian's gnuplot-nox).
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import line_plot, stop

SERVERS = {
    # name: (binary relative to the build dir, args before --port/--listen, how it takes a port)
    "coring-uring": ("apps/coring-echo", ["--backend", "uring", "--cores", "1"], "listen"),
    "coring-epoll": ("apps/coring-echo", ["--backend", "epoll", "--cores", "1"], "listen"),
    "raw-uring": ("benchmarks/baselines/baseline-raw-uring", [], "port"),
    "raw-epoll": ("benchmarks/baselines/baseline-raw-epoll", [], "port"),
    "threads": ("benchmarks/baselines/baseline-threads", [], "port"),
    "poll-pool": ("benchmarks/baselines/baseline-poll-pool", [], "port"),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of every thread of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of the full line


def start_server(build, name, port, cpu):
    binary, args, style = SERVERS[name]
    cmd = ["taskset", "-c", str(cpu), os.path.join(build, binary)] + args
    cmd += ["--listen", f"127.0.0.1:{port}"] if style == "listen" else ["--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    said = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return proc
        if not line:  # end of its stderr: it exited
            proc.wait()
            break
        said.append(line.strip())
    stop(proc)
    raise RuntimeError(f"{name} did not start (exit {proc.returncode}): {' / '.join(said) or 'no output'}")


def run_cell_once(build, server, port, cell, args):
    proc = start_server(build, server, port, args.server_cpu)
    try:
        json_path = os.path.join(args.out, "last-run.json")
        cmd = ["taskset", "-c", str(args.load_cpu), os.path.join(build, "apps/coring-load"),
               "--target", f"127.0.0.1:{port}", "--conns", str(cell["conns"]), "--depth", str(cell["depth"]),
               "--size", str(cell["size"]), "--duration", str(args.duration), "--warmup", str(args.warmup),
               "--backend", "uring", "--quiet", "--announce-window", "--json", json_path]
        load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu_start = cpu_end = None
        other = []
        for line in load.stderr:
            if line.rstrip().endswith(": measuring"):
                cpu_start = cpu_seconds(proc.pid)
            elif line.rstrip().endswith(": measured"):
                cpu_end = cpu_seconds(proc.pid)
            else:
                other.append(line.strip())
        rc = load.wait()
        with open(json_path) as f:
            result = json.load(f)
        if proc.poll() is not None:
            raise RuntimeError(f"{server} died during the run (exit {proc.returncode})")
        cpu = (cpu_end - cpu_start) if cpu_start is not None and cpu_end is not None else None
        msgs = result["messages"]
        return {
            "msgs_per_sec": result["msgs_per_sec"],
            "p50_us": result["latency_us"]["p50"],
            "p99_us": result["latency_us"]["p99"],
            "cpu_us_per_msg": (cpu * 1e6 / msgs) if cpu is not None and msgs else None,
            "errors": result["errors"]["total"],
            "note": "" if rc == 0 else (other[-1] if other else f"coring-load exit {rc}"),
        }
    finally:
        stop(proc)


def median_range(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def plot(out, rows, servers):
    written = []
    for size in sorted({r["size"] for r in rows}):
        for depth in sorted({r["depth"] for r in rows}):
            sel = [r for r in rows if r["size"] == size and r["depth"] == depth]
            if len({r["conns"] for r in sel}) < 2:
                continue
            for metric, label in (("msgs_per_sec", "messages/s"), ("p99_us", "p99 latency (us)")):
                series = [(s, [(r["conns"], r[metric]) for r in sorted(sel, key=lambda r: r["conns"])
                               if r["server"] == s and r[metric] is not None]) for s in servers]
                png = os.path.join(out, f"{metric}-{size}B-depth{depth}.png")
                if line_plot(os.path.join(out, f"plot-{metric}-{size}B-d{depth}.dat"), png,
                             f"{label} vs connections ({size} B, depth {depth})", "connections", label, series):
                    written.append(png)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with the binaries")
    ap.add_argument("--out", default="build/bench-results", help="where CSV, JSON and plots go")
    ap.add_argument("--full", action="store_true", help="the whole matrix (about 25 minutes)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    ap.add_argument("--conns", help="comma-separated connection counts")
    ap.add_argument("--sizes", help="comma-separated message sizes")
    ap.add_argument("--depths", help="comma-separated depths")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    conns = ints(args.conns) if args.conns else ([1, 100, 1000, 10000] if args.full else [1, 100, 1000])
    sizes = ints(args.sizes) if args.sizes else ([64, 4096] if args.full else [64])
    depths = ints(args.depths) if args.depths else [1, 16]
    args.duration = args.duration or (3.0 if args.full else 1.5)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.full else 0.5)
    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"matrix: unknown server {s} (known: {', '.join(SERVERS)})")
    os.makedirs(args.out, exist_ok=True)

    cells = [{"conns": c, "size": s, "depth": d} for s in sizes for d in depths for c in conns]
    runs = len(cells) * len(servers) * args.reps
    print(f"matrix: {len(servers)} servers x {len(cells)} cells x {args.reps} reps = {runs} runs of "
          f"{args.duration}+{args.warmup} s; server on CPU {args.server_cpu}, coring-load on CPU {args.load_cpu}",
          file=sys.stderr)
    # Below the ephemeral range (32768+), where no client's port can be in the way.
    port = 10000 + os.getpid() % 10000
    rows = []
    done = 0
    started = time.monotonic()
    for cell in cells:
        samples = {s: [] for s in servers}
        for rep in range(args.reps):
            order = servers[rep % len(servers):] + servers[:rep % len(servers)]
            for server in order:
                port += 1
                try:
                    samples[server].append(run_cell_once(args.build, server, port, cell, args))
                except Exception as e:  # a server that fails to start or dies: reported, not hidden
                    samples[server].append({"msgs_per_sec": None, "p50_us": None, "p99_us": None,
                                            "cpu_us_per_msg": None, "errors": None, "note": str(e)})
                done += 1
                last = samples[server][-1]
                print(f"matrix: [{done}/{runs}] {cell['conns']} conns, {cell['size']} B, depth {cell['depth']}, "
                      f"{server}: {fmt(last['msgs_per_sec'])} msgs/s, cpu {fmt(last['cpu_us_per_msg'], 2)} us/msg"
                      f"{', ' + last['note'] if last['note'] else ''} ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr)
        for server in servers:
            runs_of = samples[server]
            row = dict(cell, server=server)
            for key in ("msgs_per_sec", "p50_us", "p99_us", "cpu_us_per_msg"):
                med, lo, hi = median_range([r[key] for r in runs_of])
                row[key], row[key + "_min"], row[key + "_max"] = med, lo, hi
            row["errors"] = sum(r["errors"] or 0 for r in runs_of)
            row["notes"] = "; ".join(sorted({r["note"] for r in runs_of if r["note"]}))
            rows.append(row)

    # The table.
    header = f"{'conns':>6} {'size':>5} {'depth':>5}  {'server':<13} {'msgs/s (min..max)':>28} {'p50 us':>9} {'p99 us':>9} {'cpu us/msg':>11} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        rng = f"{fmt(r['msgs_per_sec'])} ({fmt(r['msgs_per_sec_min'])}..{fmt(r['msgs_per_sec_max'])})"
        print(f"{r['conns']:>6} {r['size']:>5} {r['depth']:>5}  {r['server']:<13} {rng:>28} {fmt(r['p50_us'], 1):>9} "
              f"{fmt(r['p99_us'], 1):>9} {fmt(r['cpu_us_per_msg'], 3):>11} {r['errors']:>6}"
              f"{'  ' + r['notes'] if r['notes'] else ''}")

    # The ratios the targets speak of, from this run.
    def get(server, conns, size, depth, key):
        for r in rows:
            if (r["server"], r["conns"], r["size"], r["depth"]) == (server, conns, size, depth):
                return r[key]
        return None
    print("\nratios (this run; cpu ratios: lower is better for the first named):")
    for size in sizes:
        for depth in depths:
            for c in conns:
                parts = []
                cu, ce, cr = (get(s, c, size, depth, "cpu_us_per_msg") for s in ("coring-uring", "coring-epoll", "raw-uring"))
                if cu and cr:
                    parts.append(f"cpu coring-uring/raw-uring {cu / cr:.2f}")
                if cu and ce:
                    parts.append(f"cpu coring-epoll/coring-uring {ce / cu:.2f}")
                mu = get("coring-uring", c, size, depth, "msgs_per_sec")
                for base in ("threads", "poll-pool"):
                    mb = get(base, c, size, depth, "msgs_per_sec")
                    if mu and mb:
                        parts.append(f"msgs/s coring-uring/{base} {mu / mb:.2f}")
                if parts:
                    print(f"  {c} conns, {size} B, depth {depth}: " + ", ".join(parts))

    with open(os.path.join(args.out, "matrix.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps,
               "server_cpu": args.server_cpu, "load_cpu": args.load_cpu}
    with open(os.path.join(args.out, "matrix.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)
    pngs = plot(args.out, rows, servers)
    print(f"\nmatrix: wrote {args.out}/matrix.csv, matrix.json" + (f" and {len(pngs)} plots" if pngs else ""),
          file=sys.stderr)
    bad = [r for r in rows if r["errors"] or r["msgs_per_sec"] is None]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
