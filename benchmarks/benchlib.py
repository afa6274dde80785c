"""What the benchmark runners share: stopping a server they started, a process's CPU time, a
coring-load run's measured window, medians, number formatting, and gnuplot line plots."""
import csv
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading


def stop(proc, timeout=10):
    """SIGTERM to our own child, by its pid; SIGKILL if it has not exited within `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def port_is_free(port):
    """True if nothing listens on 127.0.0.1:port: a bind without SO_REUSEADDR/SO_REUSEPORT
    fails while any listener (reuseport or not) holds the port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class ports:
    """Ports below the ephemeral range (32768+), where no client's port can be in the way,
    starting from a place that depends on our pid, skipping any another program holds."""

    def __init__(self):
        self.next = 20000 + os.getpid() % 10000

    def take(self):
        for _ in range(1000):
            self.next = 20000 + (self.next - 20000 + 1) % 12000
            if port_is_free(self.next):
                return self.next
        raise RuntimeError("no free port in 20000..31999")


started_procs = []  # every process spawn() started and end() has not yet stopped


def spawn(cmd, **kw):
    """Popen, remembered in started_procs so that a runner can end them all on the way out."""
    proc = subprocess.Popen(cmd, **kw)
    started_procs.append(proc)
    return proc


def end(proc):
    stop(proc)
    if proc in started_procs:
        started_procs.remove(proc)


def end_all():
    """Every process spawn() started and end() has not stopped (Ctrl-C or an error mid-run)."""
    for proc in list(started_procs):
        end(proc)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of every thread of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of the full line


def window_cpu(load, server_pid, timeout):
    """Reads the stderr of a coring-load started with --announce-window (a Popen with text
    stderr) to its end, and returns (the server's CPU seconds between 'measuring' and 'measured',
    or None if either was missing; coring-load's exit code; its other stderr lines). A run past
    `timeout` seconds is ended (SIGTERM, then SIGKILL) and returns exit code None."""
    cpu_start = cpu_end = None
    other = []
    # The reading below ends only when coring-load closes its stderr, so the deadline is a timer
    # of its own; a run it ended is no result, even though coring-load then reports what it had.
    overdue = threading.Event()

    def end_overdue():
        overdue.set()
        stop(load)

    timer = threading.Timer(timeout, end_overdue)
    timer.start()
    try:
        for line in load.stderr:
            if line.rstrip().endswith(": measuring"):
                cpu_start = cpu_seconds(server_pid)
            elif line.rstrip().endswith(": measured"):
                cpu_end = cpu_seconds(server_pid)
            else:
                other.append(line.strip())
        rc = load.wait()
    finally:
        timer.cancel()
        timer.join()
    if overdue.is_set():
        other.append(f"coring-load ran past its {timeout:.0f} s limit and was stopped")
        rc = None
    cpu = (cpu_end - cpu_start) if cpu_start is not None and cpu_end is not None else None
    return cpu, rc, other


def load_result(json_path, rc, other):
    """The JSON result of a coring-load run that window_cpu() read; RuntimeError when the run
    left none to trust: it was ended at its deadline, or wrote no file."""
    if rc is None:
        raise RuntimeError(other[-1] if other else "coring-load ran past its limit")
    if not os.path.exists(json_path):
        raise RuntimeError(f"coring-load wrote no result (exit {rc}){': ' + other[-1] if other else ''}")
    with open(json_path) as f:
        return json.load(f)


def run_note(rc, other, cpu):
    """What a run's row says about it: coring-load's last complaint, or a missing window."""
    if rc != 0:
        return other[-1] if other else f"coring-load exit {rc}"
    return "" if cpu is not None else "no measured window announced: no CPU figure"


def median_range(values):
    """(median, min, max) of the values that are not None; (None, None, None) if none are."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def summary_row(fields, runs, keys):
    """A table row: `fields`, then for each key the median, min and max over the runs (as key,
    key_min, key_max), the runs' errors summed (a run that gave no result at all, errors None,
    counts as one) and their notes joined."""
    row = dict(fields)
    for key in keys:
        row[key], row[key + "_min"], row[key + "_max"] = median_range([r[key] for r in runs])
    row["errors"] = sum(1 if r["errors"] is None else r["errors"] for r in runs)
    row["notes"] = "; ".join(sorted({r["note"] for r in runs if r["note"]}))
    return row


def write_results(out, stem, rows, machine):
    """out/stem.csv (the rows) and out/stem.json (the machine's description and the rows)."""
    with open(os.path.join(out, f"{stem}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def series_by_conns(rows, servers, metric):
    """line_plot's series: per server, its (connections, metric) points in order, missing ones left out."""
    return [(s, [(r["conns"], r[metric]) for r in sorted(rows, key=lambda r: r["conns"])
                 if r["server"] == s and r[metric] is not None]) for s in servers]


_told = False  # that gnuplot is missing, once


def line_plot(data, png, title, xlabel, ylabel, series):
    """A PNG with one line per series (name, [(x, y), ...]), x on a log scale; True if written.
    The points go to `data` (gnuplot's input, kept next to the plot)."""
    global _told
    if not shutil.which("gnuplot"):
        if not _told:
            print("gnuplot not found, no plots (apt-get install gnuplot-nox)", file=sys.stderr)
            _told = True
        return False
    with open(data, "w") as f:
        for name, points in series:
            f.write(f'"{name}"\n')
            for x, y in points:
                f.write(f"{x} {y}\n")
            f.write("\n\n")
    script = (f'set terminal pngcairo size 900,560 noenhanced; set output "{png}"; set title "{title}";'
              f'set logscale x; set xlabel "{xlabel}"; set ylabel "{ylabel}"; set key outside right; set grid;'
              f'plot for [i=0:{len(series) - 1}] "{data}" index i using 1:2 with linespoints title columnheader(1)')
    r = subprocess.run(["gnuplot", "-e", script], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
    return r.returncode == 0


def run_main(main, name):
    """A runner's entry point: SIGTERM unwinds like Ctrl-C, through main's cleanup (end_all in
    its finally), which ends every process it started; the exit status is main's."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(f"{name}: interrupted; every process it started has been stopped")
