"""What matrix.py and ladder.py share: stopping a server they started, and gnuplot line plots."""
import shutil
import signal
import subprocess
import sys


def stop(proc, timeout=10):
    """SIGTERM to our own child, by its pid; SIGKILL if it has not exited within `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
