#!/usr/bin/env python3
"""The io_uring-vs-epoll benchmark matrix: servers x connections x message sizes x depths.

Every cell runs each server in turn (the order rotates each repetition, so drift hits all alike),
the server pinned to one CPU and coring-load to another; a 2-core cell (--two-core) gives the
server two cores (coring --cores 2, the others --threads 2) and puts server and coring-load (2
cores) on the same two CPUs. Per run: msgs/s and p50/p99 from
coring-load (every reply verified), and the server's CPU time per message, read from
/proc/PID/stat exactly when coring-load's measured window opens and closes: the fair figure when
the load generator, not the server, is the bottleneck. Each cell reports the median of its
repetitions with min..max. Writes a table to stdout, CSV, JSON and gnuplot PNGs to --out.
Python standard library only (Debian's python3); plots need gnuplot (Debian's gnuplot-nox).
"""
import argparse
import os
import subprocess
import sys
import threading
import time

from benchlib import (fmt, line_plot, load_result, median_range, run_note, series_by_conns, stop, summary_row, window_cpu,
                      write_results)

# name: (binary relative to the build dir, args before --port/--listen, how it takes a port,
#        how it takes a core count: "--cores", "--threads", or None for a fixed design)
SERVERS = {
    "coring-uring": ("apps/coring-echo", ["--backend", "uring"], "listen", "--cores"),
    "coring-epoll": ("apps/coring-echo", ["--backend", "epoll"], "listen", "--cores"),
    "raw-uring": ("benchmarks/baselines/baseline-raw-uring", [], "port", "--threads"),
    "raw-uring-fast": ("benchmarks/baselines/baseline-raw-uring-fast", [], "port", "--threads"),
    "raw-epoll": ("benchmarks/baselines/baseline-raw-epoll", [], "port", "--threads"),
    "threads": ("benchmarks/baselines/baseline-threads", [], "port", None),
    "poll-pool": ("benchmarks/baselines/baseline-poll-pool", [], "port", None),
    "asio-epoll": ("benchmarks/baselines/baseline-asio-epoll", [], "port", "--threads"),
    "asio-uring": ("benchmarks/baselines/baseline-asio-uring", [], "port", "--threads"),
}
DEFAULT_SERVERS = ["coring-uring", "coring-epoll", "raw-uring", "raw-epoll", "threads", "poll-pool"]
ASIO = ["asio-epoll", "asio-uring"]
# coring-echo's io_uring fast paths, each turned off alone (SQPOLL and zerocopy sends, off by
# default, turned on alone: zerocopy with registered buffers), then all off: a row per variant,
# compared with coring-uring in the same run. A coring-echo that does not know a flag exits at
# start-up, and the matrix skips that row.
FAST_PATH_FLAGS = {"fixed-files": "on", "recv-bundle": "on", "coalesce": "on", "send-zc": "off",
                   "registered-buffers": "on", "sqpoll": "off"}
FAST_PATHS = {
    "coring-uring-no-fixed-files": ["--fixed-files", "off"],
    "coring-uring-no-bundle": ["--recv-bundle", "off"],
    "coring-uring-no-coalesce": ["--coalesce", "off"],
    # Zerocopy needs real fds (a cancelled one resets its connection through connect()), so this
    # row turns direct descriptors off too.
    "coring-uring-send-zc": ["--send-zc", "on", "--fixed-files", "off"],
    "coring-uring-sqpoll": ["--sqpoll", "on"],
    "coring-uring-no-fast-paths": [x for flag in FAST_PATH_FLAGS if flag not in ("sqpoll", "send-zc")
                                   for x in (f"--{flag}", "off")],
}
for name, extra in FAST_PATHS.items():
    SERVERS[name] = ("apps/coring-echo", ["--backend", "uring"] + extra, "listen", "--cores")
# Issue 11's preset (--issue11): what its targets are stated over.
ISSUE11 = {"servers": ["coring-uring", "coring-epoll", "raw-uring", "raw-uring-fast", "raw-epoll"] + ASIO
           + list(FAST_PATHS),
           "conns": [100, 1000, 10000], "sizes": [64, 1024, 16384], "depths": [16],
           "two_core": "1000x64x16,10000x64x16", "reps": 5, "duration": 2.0, "warmup": 0.5}

def cpus_of(cell, args):
    """The CPUs of a cell: (server's, coring-load's). A 2-core cell puts both on the same two."""
    if cell["cores"] == 1:
        return str(args.server_cpu), str(args.load_cpu)
    both = f"{args.server_cpu},{args.load_cpu}"
    return both, both


def start_server(build, name, port, cpus, cores):
    binary, args, style, cores_flag = SERVERS[name]
    cmd = ["taskset", "-c", cpus, os.path.join(build, binary)] + args
    if cores_flag:
        cmd += [cores_flag, str(cores)]
    cmd += ["--listen", f"127.0.0.1:{port}"] if style == "listen" else ["--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    said = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            # Read on (and drop) whatever it says later: a full pipe would stall a chatty server.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc
        if not line:  # end of its stderr: it exited
            proc.wait()
            break
        said.append(line.strip())
    stop(proc)
    raise RuntimeError(f"{name} did not start (exit {proc.returncode}): {' / '.join(said) or 'no output'}")


def startable(build, name, port, args):
    """None if `name` starts (and then stops it again), else why not, in one line: a binary that
    was not built, or one that exits at start-up (a flag this coring-echo does not know)."""
    binary = os.path.join(build, SERVERS[name][0])
    if not os.path.exists(binary):
        return f"{binary} was not built" + (" (it needs asio.hpp: apt-get install libasio-dev)" if name in ASIO else "")
    try:
        stop(start_server(build, name, port, str(args.server_cpu), 1))
        return None
    except RuntimeError as e:
        return str(e)


def run_cell_once(build, server, port, cell, args):
    server_cpus, load_cpus = cpus_of(cell, args)
    proc = start_server(build, server, port, server_cpus, cell["cores"])
    try:
        json_path = os.path.join(args.out, "last-run.json")
        if os.path.exists(json_path):
            os.remove(json_path)  # a run that writes none must not be read as the one before it
        cmd = ["taskset", "-c", load_cpus, os.path.join(build, "apps/coring-load"),
               "--target", f"127.0.0.1:{port}", "--conns", str(cell["conns"]), "--depth", str(cell["depth"]),
               "--size", str(cell["size"]), "--duration", str(args.duration), "--warmup", str(args.warmup),
               "--backend", "uring", "--cores", str(cell["cores"]), "--quiet", "--announce-window",
               "--json", json_path]
        load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu, rc, other = window_cpu(load, proc.pid, timeout=args.warmup + args.duration + 120)
        result = load_result(json_path, rc, other)
        if proc.poll() is not None:
            raise RuntimeError(f"{server} died during the run (exit {proc.returncode})")
        msgs = result["messages"]
        return {
            "msgs_per_sec": result["msgs_per_sec"],
            "p50_us": result["latency_us"]["p50"],
            "p99_us": result["latency_us"]["p99"],
            "cpu_us_per_msg": (cpu * 1e6 / msgs) if cpu is not None and msgs else None,
            "errors": result["errors"]["total"],
            "note": run_note(rc, other, cpu),
        }
    finally:
        stop(proc)


def plot(out, rows, servers):
    written = []
    for size in sorted({r["size"] for r in rows}):
        for depth in sorted({r["depth"] for r in rows}):
            sel = [r for r in rows if r["size"] == size and r["depth"] == depth and r["cores"] == 1]
            if len({r["conns"] for r in sel}) < 2:
                continue
            for metric, label in (("msgs_per_sec", "messages/s"), ("p99_us", "p99 latency (us)")):
                series = series_by_conns(sel, servers, metric)
                png = os.path.join(out, f"{metric}-{size}B-depth{depth}.png")
                if line_plot(os.path.join(out, f"plot-{metric}-{size}B-d{depth}.dat"), png,
                             f"{label} vs connections ({size} B, depth {depth})", "connections", label, series):
                    written.append(png)
    return written


def parse_two_core(spec):
    """'1000x64x16,...' (connections x size x depth) -> 2-core cells."""
    cells = []
    for item in (x for x in spec.split(",") if x):
        conns, size, depth = (int(v) for v in item.split("x"))
        cells.append({"conns": conns, "size": size, "depth": depth, "cores": 2})
    return cells


def cell_key(cell):
    return (cell["conns"], cell["size"], cell["depth"], cell["cores"])


def print_ratios(rows, cells, rounds):
    """The ratios the targets speak of, from this run, per cell. CPU ratios are server CPU per
    message; 'cheaper' and 'more expensive' in the targets mean that. Each is the ratio of the
    two medians, then the same ratio taken round by round (the two servers ran back to back in
    each repetition): its median and range show how far the cell moves between rounds, and the
    verdict is that median's."""
    index = {(r["server"],) + cell_key(r): r for r in rows}

    def get(server, cell, key):
        r = index.get((server,) + cell_key(cell))
        return r[key] if r else None

    def per_round(a, b, cell):
        xs, ys = rounds.get((a, cell_key(cell)), []), rounds.get((b, cell_key(cell)), [])
        return sorted(x / y for x, y in zip(xs, ys) if x and y)

    def cpu_ratio(a, b, cell):
        x, y = get(a, cell, "cpu_us_per_msg"), get(b, cell, "cpu_us_per_msg")
        return x / y if x and y else None

    def flawed(server, cell):
        """' [server: errors]' when the row of `server` had errors or failed repetitions."""
        return f" [{server}: errors, no valid comparison]" if get(server, cell, "errors") else ""

    def shown(a, b, cell):
        """'a/b 1.10 (rounds: median 1.02, 0.75..1.44)', and the number a verdict is taken on."""
        r = cpu_ratio(a, b, cell)
        if not r:
            return None, None
        flaws = flawed(a, cell) + flawed(b, cell)
        paired = per_round(a, b, cell)
        if len(paired) < 2:
            return f"{a}/{b} {r:.2f}{flaws}", r
        mid = median_range(paired)[0]
        return f"{a}/{b} {r:.2f} (rounds: median {mid:.2f}, {paired[0]:.2f}..{paired[-1]:.2f}){flaws}", mid

    def verdict(ok):
        return "" if ok is None else (" met" if ok else " MISSED")

    print("\nratios (this run; server CPU per message, so below 1 the first named is cheaper; a verdict is on"
          " the median of the per-round ratios):")
    for cell in cells:
        parts = []
        big = cell["conns"] >= 100  # the io_uring floor targets hold from 100 connections up
        text, r = shown("coring-uring", "raw-uring", cell)
        if text:
            parts.append(text + (f" (<= 1.00{verdict(r <= 1.0)})" if big else ""))
        text, r = shown("coring-uring", "raw-uring-fast", cell)
        if text:
            parts.append(text + (f" (<= 1.03{verdict(r <= 1.03)})" if big else ""))
        text, coring = shown("coring-epoll", "coring-uring", cell)
        if text:
            raw_text, raw = shown("raw-epoll", "raw-uring-fast", cell)
            if raw_text:
                text += f" vs {raw_text} (>={verdict(coring >= raw)})"
            parts.append(text)
        for asio in ASIO:
            text, r = shown(asio, "coring-uring", cell)
            if text:
                target = 1.25 if cell["conns"] in (1000, 10000) else 1.0
                parts.append(text + f" (>= {target:.2f}{verdict(r >= target)})")
        for variant in FAST_PATHS:
            text, _ = shown(variant, "coring-uring", cell)
            if text:
                parts.append(text)
        mu = get("coring-uring", cell, "msgs_per_sec")
        for base in ("threads", "poll-pool"):
            mb = get(base, cell, "msgs_per_sec")
            if mu and mb:
                parts.append(f"msgs/s coring-uring/{base} {mu / mb:.2f}")
        if parts:
            print(f"  {cell['conns']} conns, {cell['size']} B, depth {cell['depth']}, {cell['cores']} core(s):")
            for part in parts:
                print(f"    {part}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with the binaries")
    ap.add_argument("--out", default="build/bench-results", help="where CSV, JSON and plots go")
    ap.add_argument("--full", action="store_true", help="the whole matrix (about 25 minutes)")
    ap.add_argument("--issue11", action="store_true",
                    help="issue 11's preset: coring, raw (plain and fast-path) and Asio servers plus coring's "
                         "fast-path rows; 100/1000/10000 conns x 64/1024/16384 B at depth 16, 2-core cells at "
                         "1000 and 10000 conns; 5 reps of 2+0.5 s (about 45 minutes)")
    ap.add_argument("--fast-paths", action="store_true", help="add a row per coring fast path turned off (and SQPOLL on)")
    ap.add_argument("--asio", action="store_true", help="add the Asio servers (asio-epoll, asio-uring)")
    ap.add_argument("--servers", help="comma-separated subset (known: " + ", ".join(SERVERS) + ")")
    ap.add_argument("--conns", help="comma-separated connection counts")
    ap.add_argument("--sizes", help="comma-separated message sizes")
    ap.add_argument("--depths", help="comma-separated depths")
    ap.add_argument("--two-core", help="2-core cells, as CONNSxSIZExDEPTH,... (e.g. 1000x64x16); '' for none")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    preset = ISSUE11 if args.issue11 else {}
    conns = ints(args.conns) if args.conns else preset.get("conns", [1, 100, 1000, 10000] if args.full else [1, 100, 1000])
    sizes = ints(args.sizes) if args.sizes else preset.get("sizes", [64, 4096] if args.full else [64])
    depths = ints(args.depths) if args.depths else preset.get("depths", [1, 16])
    two_core = args.two_core if args.two_core is not None else preset.get("two_core", "")
    args.reps = args.reps or preset.get("reps", 3)
    args.duration = args.duration or preset.get("duration", 3.0 if args.full else 1.5)
    args.warmup = args.warmup if args.warmup is not None else preset.get("warmup", 1.0 if args.full else 0.5)
    servers = args.servers.split(",") if args.servers else preset.get("servers", DEFAULT_SERVERS)
    servers += (ASIO if args.asio else []) + (list(FAST_PATHS) if args.fast_paths else [])
    servers = list(dict.fromkeys(s for s in servers if s))  # in order, once each
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"matrix: unknown server {s} (known: {', '.join(SERVERS)})")
    os.makedirs(args.out, exist_ok=True)

    # Below the ephemeral range (32768+), where no client's port can be in the way.
    port = 10000 + os.getpid() % 10000
    # A server that cannot start (not built, or a flag its binary does not know yet) is left
    # out of the whole run with one line, instead of failing every cell.
    for s in list(servers):
        port += 1
        why = startable(args.build, s, port, args)
        if why:
            print(f"matrix: skipping {s}: {why}", file=sys.stderr)
            servers.remove(s)
    if not servers:
        sys.exit("matrix: no server could start")

    cells = [{"conns": c, "size": s, "depth": d, "cores": 1} for s in sizes for d in depths for c in conns]
    cells += parse_two_core(two_core)
    runs = len(cells) * len(servers) * args.reps
    print(f"matrix: {len(servers)} servers x {len(cells)} cells x {args.reps} reps = {runs} runs of "
          f"{args.duration}+{args.warmup} s; server on CPU {args.server_cpu}, coring-load on CPU {args.load_cpu}",
          file=sys.stderr)
    two_core_note = (f"2-core cells: the server (coring --cores 2, raw and Asio --threads 2; threads and "
                     f"poll-pool as always) and coring-load (--cores 2) share CPUs {args.server_cpu},{args.load_cpu}: "
                     f"this machine has {os.cpu_count()} CPUs, so the load generator competes with the server")
    if any(c["cores"] > 1 for c in cells):
        print(f"matrix: {two_core_note}", file=sys.stderr)
    rows = []
    rounds = {}  # (server, cell): CPU per message of each repetition, in order (a round is one repetition of every server)
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
                      f"{cell['cores']} core(s), {server}: {fmt(last['msgs_per_sec'])} msgs/s, "
                      f"cpu {fmt(last['cpu_us_per_msg'], 2)} us/msg"
                      f"{', ' + last['note'] if last['note'] else ''} ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr)
        for server in servers:
            rows.append(summary_row(dict(cell, server=server), samples[server],
                                    ("msgs_per_sec", "p50_us", "p99_us", "cpu_us_per_msg")))
            rounds[(server, cell_key(cell))] = [r["cpu_us_per_msg"] for r in samples[server]]

    # The table.
    width = max(13, *(len(s) for s in servers))
    header = (f"{'conns':>6} {'size':>5} {'depth':>5} {'cores':>5}  {'server':<{width}} {'msgs/s (min..max)':>28} "
              f"{'p50 us':>9} {'p99 us':>9} {'cpu us/msg':>11} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        rng = f"{fmt(r['msgs_per_sec'])} ({fmt(r['msgs_per_sec_min'])}..{fmt(r['msgs_per_sec_max'])})"
        print(f"{r['conns']:>6} {r['size']:>5} {r['depth']:>5} {r['cores']:>5}  {r['server']:<{width}} {rng:>28} "
              f"{fmt(r['p50_us'], 1):>9} {fmt(r['p99_us'], 1):>9} {fmt(r['cpu_us_per_msg'], 3):>11} {r['errors']:>6}"
              f"{'  ' + r['notes'] if r['notes'] else ''}")
    if any(c["cores"] > 1 for c in cells):
        print(f"note: {two_core_note}")

    print_ratios(rows, cells, rounds)

    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps,
               "server_cpu": args.server_cpu, "load_cpu": args.load_cpu}
    if any(c["cores"] > 1 for c in cells):
        machine["two_core_note"] = two_core_note
    machine["cpu_us_per_msg_by_round"] = {f"{server} {cell[0]}x{cell[1]}x{cell[2]} {cell[3]} core(s)": v
                                          for (server, cell), v in rounds.items()}
    write_results(args.out, "matrix", rows, machine)
    pngs = plot(args.out, rows, servers)
    print(f"\nmatrix: wrote {args.out}/matrix.csv, matrix.json" + (f" and {len(pngs)} plots" if pngs else ""),
          file=sys.stderr)
    bad = [r for r in rows if r["errors"] or r["msgs_per_sec"] is None]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
