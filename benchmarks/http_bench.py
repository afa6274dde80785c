#!/usr/bin/env python3
"""HTTP/1.1 plaintext: coring-http (io_uring and epoll) vs nginx vs a raw io_uring floor.

Every server answers GET /plaintext with the same 13-byte body ("Hello, World!", text/plain);
each run starts the server afresh, pinned to one CPU (taskset), and drives it from another
with one of two clients: wrk (pipelined through a Lua script at depth > 1; it checks status
codes only) and coring-load --protocol http (checks status and body of every response). Servers
take turns within each repetition (the order rotates, so drift hits all alike); each cell
reports the median of its repetitions. Per run: requests/s, p50/p99 latency as the client
reports it, and the server's CPU time (utime + stime from /proc) per request over the measured
window. Writes a table and the issue's ratios to stdout, CSV, JSON and gnuplot PNGs to --out.
Python standard library only; plots need gnuplot (Debian's gnuplot-nox).
"""
import argparse
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import (cpu_seconds, end, end_all, fmt, line_plot, load_result, ports, run_note, series_by_conns, spawn, summary_row,
                      run_main, window_cpu, write_results)

SERVERS = ["coring-uring", "coring-epoll", "nginx", "raw-uring-http"]
DRIVERS = ["wrk", "coring-load"]
# What each server's Server header says: a probe that finds another word has reached someone
# else's server (SO_REUSEPORT lets a second process share a port without a word).
SERVER_HEADER = {"coring-uring": "coring", "coring-epoll": "coring", "nginx": "nginx", "raw-uring-http": "coring"}
BODY = b"Hello, World!"
PATH = "/plaintext"
NGINX_KEEPALIVE_REQUESTS = 1_000_000_000  # far more than any run sends on one connection
NGINX_KEEPALIVE_TIMEOUT = "3600s"         # far longer than any run
NGINX_NOTE = (f"nginx: one process (master_process off, worker_processes 1), access_log off, "
              f"keepalive_requests {NGINX_KEEPALIVE_REQUESTS:,} and keepalive_timeout {NGINX_KEEPALIVE_TIMEOUT}, "
              f"so it never closes a connection mid-run")

def nginx_conf(tmp, port):
    path = os.path.join(tmp, f"nginx-{port}.conf")
    temp = os.path.join(tmp, "nginx-temp")
    os.makedirs(temp, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"""# Written by benchmarks/http_bench.py for one run.
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests {NGINX_KEEPALIVE_REQUESTS};
    keepalive_timeout {NGINX_KEEPALIVE_TIMEOUT};
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = {PATH} {{
            default_type text/plain;
            return 200 "{BODY.decode()}";
        }}
    }}
}}
""")
    return path


def server_command(build, name, port, tmp):
    if name in ("coring-uring", "coring-epoll"):
        return [os.path.join(build, "apps/coring-http"), "--listen", f"127.0.0.1:{port}", "--cores", "1",
                "--backend", name.split("-")[1]]
    if name == "raw-uring-http":
        return [os.path.join(build, "benchmarks/baselines/baseline-raw-uring-http"), "--port", str(port)]
    if name == "nginx":
        return ["nginx", "-p", tmp, "-e", os.path.join(tmp, "nginx-error.log"), "-c", nginx_conf(tmp, port)]
    raise ValueError(name)


def probe(port, timeout=1.0):
    """One GET /plaintext on a new connection: the raw response (head and body), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            data = b""
            deadline = time.monotonic() + timeout
            while not data.endswith(BODY) and len(data) < 4096 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def check_response(name, data):
    """Why the probe's response is not the one every server must send, or None if it is."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if not lines[0].startswith("HTTP/1.1 200"):
        return f"status line {lines[0]!r}"
    if body != BODY or fields.get("content-length") != str(len(BODY)):
        return f"body {body!r}"
    if fields.get("content-type") != "text/plain":
        return f"Content-Type {fields.get('content-type')!r}"
    if SERVER_HEADER[name] not in fields.get("server", ""):
        return f"Server {fields.get('server')!r}: someone else's server answers on this port"
    return None


def start_server(build, name, port, args, tmp):
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    cmd = ["taskset", "-c", str(args.server_cpu)] + server_command(build, name, port, tmp)
    proc = spawn(cmd, stdout=log, stderr=log)  # taskset execs the server: proc.pid is the server's
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        data = probe(port)
        if data:
            why = check_response(name, data)
            if why:
                end(proc)
                raise RuntimeError(f"{name}: wrong response: {why}")
            return proc, data
        time.sleep(0.05)
    end(proc)
    with open(os.path.join(tmp, f"{name}.log")) as f:
        said = " / ".join(line.strip() for line in f.readlines()[-3:])
    raise RuntimeError(f"{name} did not start (exit {proc.returncode}): {said or 'no output'}")


WRK_PIPELINE = """-- Written by benchmarks/http_bench.py: {depth} pipelined requests per round trip.
init = function(args)
    local r = {{}}
    for i = 1, {depth} do r[i] = wrk.format(nil, "{path}") end
    batch = table.concat(r)
end
request = function() return batch end
"""

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(text):
    """requests, req/s, p50 and p99 (us) and errors from `wrk --latency` output."""
    def latency(pct):
        # A pipelining script makes wrk print some percentiles as 0.00us (wg/wrk#236): no figure.
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m and float(m.group(1)) > 0 else None
    requests = re.search(r"^\s+(\d+) requests in", text, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return {"requests": int(requests.group(1)) if requests else None, "req_per_sec": float(rate.group(1)) if rate else None,
            "p50_us": latency(50), "p99_us": latency(99), "errors": errors}


def wrk_seconds(seconds):
    """wrk takes whole seconds only: a fraction is rounded up."""
    return f"{max(1, math.ceil(seconds))}s"


def drive_wrk(port, pid, cell, args, tmp):
    """wrk for the warm-up (unmeasured), then again for the measured run, the server's CPU read
    just before and after it. The window includes wrk's connects (a few ms at 1,000 connections)."""
    url = f"http://127.0.0.1:{port}{PATH}"
    base = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", "-c", str(cell["conns"]), "--timeout", "5s"]
    if cell["depth"] > 1:
        script = os.path.join(tmp, f"pipeline-{cell['depth']}.lua")
        with open(script, "w") as f:
            f.write(WRK_PIPELINE.format(depth=cell["depth"], path=PATH))
        base += ["-s", script]
    limit = args.warmup + args.duration + 30
    if args.warmup > 0:
        warm = spawn(base + ["-d", wrk_seconds(args.warmup), url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            warm.wait(timeout=limit)
        finally:
            end(warm)
    run = spawn(base + ["-d", wrk_seconds(args.duration), "--latency", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
    cpu_start = cpu_seconds(pid)
    try:
        out, _ = run.communicate(timeout=limit)
    finally:
        cpu_end = cpu_seconds(pid)
        end(run)
    r = parse_wrk(out)
    r["cpu"] = cpu_end - cpu_start
    r["note"] = "" if run.returncode == 0 and r["requests"] else f"wrk exit {run.returncode}: {out.strip()[-200:]}"
    return r


def drive_coring_load(build, port, pid, cell, args, tmp):
    """coring-load with --announce-window: the server's CPU is read as its window opens and closes."""
    json_path = os.path.join(tmp, "coring-load.json")
    cmd = ["taskset", "-c", str(args.load_cpu), os.path.join(build, "apps/coring-load"), "--protocol", "http",
           "--target", f"127.0.0.1:{port}", "--path", PATH, "--expect", BODY.decode(),
           "--conns", str(cell["conns"]), "--depth", str(cell["depth"]), "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--backend", "uring", "--cores", "1", "--quiet", "--announce-window",
           "--json", json_path]
    if os.path.exists(json_path):
        os.remove(json_path)
    load = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        cpu, rc, other = window_cpu(load, pid, timeout=args.warmup + args.duration + 60)
    finally:
        end(load)
    result = load_result(json_path, rc, other)
    return {"requests": result["messages"], "req_per_sec": result["msgs_per_sec"],
            "p50_us": result["latency_us"]["p50"], "p99_us": result["latency_us"]["p99"],
            "errors": result["errors"]["total"], "cpu": cpu,
            "note": run_note(rc, other, cpu)}


def run_once(build, server, driver, cell, args, tmp, port_pool):
    port = port_pool.take()
    proc, _ = start_server(build, server, port, args, tmp)
    try:
        if driver == "wrk":
            r = drive_wrk(port, proc.pid, cell, args, tmp)
        else:
            r = drive_coring_load(build, port, proc.pid, cell, args, tmp)
        if proc.poll() is not None:
            raise RuntimeError(f"{server} died during the run (exit {proc.returncode})")
    finally:
        end(proc)
    r["cpu_us_per_req"] = r["cpu"] * 1e6 / r["requests"] if r["cpu"] is not None and r["requests"] else None
    return r


def print_ratios(rows, cells, drivers):
    """The issue's three targets, each from this run and per client. CPU ratios are server CPU
    per request: below 1 the first named is cheaper."""
    index = {(r["server"], r["driver"], r["conns"], r["depth"]): r for r in rows}

    def ratio(a, b, driver, cell, key):
        x = index.get((a, driver, cell["conns"], cell["depth"]), {}).get(key)
        y = index.get((b, driver, cell["conns"], cell["depth"]), {}).get(key)
        return x / y if x and y else None

    def verdict(value, ok):
        return f" ({'met' if ok(value) else 'MISSED'})"

    print("\nratios (this run, medians; targets: CPU/req <= 0.8x nginx's at 100 conns depth 1, req/s >= 8x nginx's "
          "at depth 16, CPU/req <= 1.1x the raw io_uring floor's):")
    for cell in cells:
        for driver in drivers:
            parts = []
            r = ratio("coring-uring", "nginx", driver, cell, "cpu_us_per_req")
            if r:
                target = cell["conns"] == 100 and cell["depth"] == 1
                parts.append(f"cpu/req coring-uring/nginx {r:.2f}" + (verdict(r, lambda v: v <= 0.8) if target else ""))
            r = ratio("coring-uring", "nginx", driver, cell, "req_per_sec")
            if r:
                parts.append(f"req/s coring-uring/nginx {r:.2f}" + (verdict(r, lambda v: v >= 8) if cell["depth"] >= 16 else ""))
            r = ratio("coring-uring", "raw-uring-http", driver, cell, "cpu_us_per_req")
            if r:
                parts.append(f"cpu/req coring-uring/raw-uring-http {r:.2f}" + verdict(r, lambda v: v <= 1.1))
            r = ratio("coring-epoll", "coring-uring", driver, cell, "cpu_us_per_req")
            if r:
                parts.append(f"cpu/req coring-epoll/coring-uring {r:.2f}")
            if parts:
                print(f"  {cell['conns']} conns, depth {cell['depth']}, {driver}: " + "; ".join(parts))


def plot(out, rows, servers, drivers):
    written = []
    for driver in drivers:
        for depth in sorted({r["depth"] for r in rows}):
            sel = [r for r in rows if r["driver"] == driver and r["depth"] == depth]
            if len({r["conns"] for r in sel}) < 2:
                continue
            for metric, label in (("req_per_sec", "requests/s"), ("cpu_us_per_req", "server CPU us per request")):
                series = series_by_conns(sel, servers, metric)
                png = os.path.join(out, f"http-{metric}-depth{depth}-{driver}.png")
                if line_plot(os.path.join(out, f"http-plot-{metric}-d{depth}-{driver}.dat"), png,
                             f"{label} vs connections (depth {depth}, {driver})", "connections", label, series):
                    written.append(png)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-release", help="build directory with the binaries")
    ap.add_argument("--out", default="build/bench-results", help="where CSV, JSON and plots go")
    ap.add_argument("--quick", action="store_true", help="to try it out: 1 rep of 1+2 s, 100 conns at depth 1 and 16")
    ap.add_argument("--servers", help="comma-separated subset of " + ", ".join(SERVERS))
    ap.add_argument("--drivers", help="comma-separated subset of " + ", ".join(DRIVERS))
    ap.add_argument("--conns", help="comma-separated connection counts (default 100,1000)")
    ap.add_argument("--depths", help="comma-separated pipelining depths (default 1,16)")
    ap.add_argument("--reps", type=int, help="repetitions per cell (default 3)")
    ap.add_argument("--duration", type=float, help="measured seconds per run (default 3; wrk rounds up to whole seconds)")
    ap.add_argument("--warmup", type=float, help="unmeasured seconds before each run (default 1; likewise)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    conns = ints(args.conns) if args.conns else [100] if args.quick else [100, 1000]
    depths = ints(args.depths) if args.depths else [1, 16]
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else 1.0
    servers = args.servers.split(",") if args.servers else list(SERVERS)
    drivers = args.drivers.split(",") if args.drivers else list(DRIVERS)
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"http_bench: unknown server {s} (known: {', '.join(SERVERS)})")
    for d in drivers:
        if d not in DRIVERS:
            sys.exit(f"http_bench: unknown driver {d} (known: {', '.join(DRIVERS)})")
    if "wrk" in drivers and not shutil.which("wrk"):
        sys.exit("http_bench: wrk not found (apt-get install wrk)")
    if "nginx" in servers and not shutil.which("nginx"):
        sys.exit("http_bench: nginx not found (apt-get install nginx-light)")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="coring-http-bench.")
    port_pool = ports()

    cells = [{"conns": c, "depth": d} for d in depths for c in conns]
    runs = len(cells) * len(drivers) * len(servers) * args.reps
    per_run = args.duration + args.warmup + 0.7  # server start and stop, connects
    print(f"http_bench: {len(servers)} servers x {len(cells)} cells x {len(drivers)} clients x {args.reps} reps = "
          f"{runs} runs of {args.warmup}+{args.duration} s (about {runs * per_run / 60:.0f} min); server on CPU "
          f"{args.server_cpu}, clients on CPU {args.load_cpu}", file=sys.stderr)
    print(f"http_bench: {NGINX_NOTE}", file=sys.stderr)
    try:
        # Each server once, before anything is measured: it starts, and its response is the
        # one all must send (printed, so the heads can be compared).
        for s in list(servers):
            try:
                proc, data = start_server(args.build, s, port_pool.take(), args, tmp)
                end(proc)
                head = data.partition(b"\r\n\r\n")[0].decode("latin-1").replace("\r\n", " | ")
                print(f"http_bench: {s}: {len(data)} bytes: {head} | {BODY.decode()}", file=sys.stderr)
            except RuntimeError as e:
                print(f"http_bench: skipping {s}: {e}", file=sys.stderr)
                servers.remove(s)
        if not servers:
            sys.exit("http_bench: no server could start")

        rows = []
        done = 0
        started = time.monotonic()
        for cell in cells:
            for driver in drivers:
                samples = {s: [] for s in servers}
                for rep in range(args.reps):
                    order = servers[rep % len(servers):] + servers[:rep % len(servers)]
                    for server in order:
                        try:
                            r = run_once(args.build, server, driver, cell, args, tmp, port_pool)
                        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                            r = {"req_per_sec": None, "p50_us": None, "p99_us": None, "cpu_us_per_req": None,
                                 "errors": None, "note": str(e)}
                        samples[server].append(r)
                        done += 1
                        print(f"http_bench: [{done}/{runs}] {cell['conns']} conns, depth {cell['depth']}, {driver}, "
                              f"{server}: {fmt(r['req_per_sec'])} req/s, p99 {fmt(r['p99_us'])} us, "
                              f"cpu {fmt(r['cpu_us_per_req'], 2)} us/req{', ' + r['note'] if r['note'] else ''} "
                              f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
                for server in servers:
                    rows.append(summary_row(dict(cell, driver=driver, server=server), samples[server],
                                            ("req_per_sec", "p50_us", "p99_us", "cpu_us_per_req")))
    finally:
        end_all()  # Ctrl-C or an error mid-run: nothing of ours outlives us
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(14, *(len(s) for s in servers))
    header = (f"{'conns':>5} {'depth':>5} {'client':<11} {'server':<{width}} {'req/s (min..max)':>32} "
              f"{'p50 us':>9} {'p99 us':>9} {'cpu us/req':>10} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        rng = f"{fmt(r['req_per_sec'])} ({fmt(r['req_per_sec_min'])}..{fmt(r['req_per_sec_max'])})"
        print(f"{r['conns']:>5} {r['depth']:>5} {r['driver']:<11} {r['server']:<{width}} {rng:>32} "
              f"{fmt(r['p50_us'], 1):>9} {fmt(r['p99_us'], 1):>9} {fmt(r['cpu_us_per_req'], 3):>10} {r['errors']:>6}"
              f"{'  ' + r['notes'] if r['notes'] else ''}")
    print(f"note: {NGINX_NOTE}; wrk's p50/p99 at depth > 1 time each response from its batch's send, "
          "and a '-' is a percentile wrk printed as 0 (wg/wrk#236, pipelining)")
    print_ratios(rows, cells, drivers)

    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
               "duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps,
               "server_cpu": args.server_cpu, "load_cpu": args.load_cpu, "nginx": NGINX_NOTE}
    write_results(args.out, "http", rows, machine)
    pngs = plot(args.out, rows, servers, drivers)
    print(f"\nhttp_bench: wrote {args.out}/http.csv, http.json" + (f" and {len(pngs)} plots" if pngs else ""),
          file=sys.stderr)
    return 1 if any(r["errors"] or r["req_per_sec"] is None for r in rows) else 0


if __name__ == "__main__":
    run_main(main, "http_bench")
