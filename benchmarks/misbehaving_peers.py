#!/usr/bin/env python3
"""Peers that misbehave, against a running echo server binary (coring-echo by default).

  --stuff N       N clients send until everything between them and the server is full and
                  never read; then a newcomer's 100-byte echo is timed (5 tries: min/median/max).
  --stream-mib M  one client streams M MiB through the server and reads it all back; then the
                  server's RssAnon (and again after 3 s idle).

Each run starts its own server (--backend, --server-flags) on a loopback port, pinned to CPU 0
while this script runs on CPU 1, and stops it by PID. Python stdlib only.
"""
import argparse, os, resource, selectors, signal, socket, statistics, subprocess, sys, time


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return -1


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_until_quiet(pid, limit=30.0):
    """Until the server has used almost no CPU for 200 ms: it has moved all it can."""
    start = time.time()
    while time.time() - start < limit:
        before = cpu_ticks(pid)
        time.sleep(0.2)
        if cpu_ticks(pid) - before <= 2:
            return time.time() - start
    return None


def start_server(args, port):
    cmd = ["taskset", "-c", "0", args.binary, "--listen", f"127.0.0.1:{port}", "--cores", "1",
           "--backend", args.backend] + args.server_flags.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"server did not start: {' '.join(cmd)}")


def echo_ms(port, payload, limit=3.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    s.sendall(payload)
    got = b""
    try:
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    took = (time.perf_counter() - start) * 1000
    s.close()
    return took if got == payload else float("inf")


def stuff(port, n):
    peers = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        peers.append(s)
    junk = b"x" * 65536
    quiet, start = 0, time.time()
    while quiet < 20 and time.time() - start < 60:
        sent = 0
        for s in peers:
            try:
                sent += s.send(junk)
            except (BlockingIOError, OSError):
                pass
        quiet = quiet + 1 if sent == 0 else 0
        time.sleep(0.002)
    return peers


def stream(port, mib):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    total, chunk = mib << 20, b"\xa5" * (256 << 10)
    sent = got = 0
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    while got < total:
        for _, ev in sel.select(5):
            if ev & selectors.EVENT_WRITE and sent < total:
                try:
                    sent += s.send(chunk[: min(len(chunk), total - sent)])
                except BlockingIOError:
                    pass
                if sent >= total:
                    sel.modify(s, selectors.EVENT_READ)
            if ev & selectors.EVENT_READ:
                data = s.recv(1 << 20)
                if not data:
                    sys.exit("server closed early")
                got += len(data)
    s.close()
    return got


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="build-release/apps/coring-echo")
    p.add_argument("--backend", default="uring")
    p.add_argument("--server-flags", default="", help="extra flags for the server, one string")
    p.add_argument("--port", type=int, default=17411)
    p.add_argument("--stuff", type=int, default=None)
    p.add_argument("--stream-mib", type=int, default=None)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    proc = start_server(args, args.port)
    try:
        if args.stuff is not None:
            peers = stuff(args.port, args.stuff)
            settled = wait_until_quiet(proc.pid)
            print(f"  server settled {settled:.1f} s after the peers stopped sending" if settled is not None
                  else "  server still busy after 30 s", flush=True)
            times = [echo_ms(args.port, os.urandom(100)) for _ in range(5)]
            print(f"{args.backend} {args.stuff} non-reading peers: newcomer echo ms "
                  f"min {min(times):.2f} median {statistics.median(times):.2f} max {max(times):.2f}", flush=True)
            for s in peers:
                s.close()
        if args.stream_mib is not None:
            before = rss_anon_kib(proc.pid)
            stream(args.port, args.stream_mib)
            after = rss_anon_kib(proc.pid)
            time.sleep(3)
            idle = rss_anon_kib(proc.pid)
            print(f"{args.backend} {args.stream_mib} MiB stream: server RssAnon {before} KiB before, "
                  f"{after} KiB after, {idle} KiB after 3 s idle", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)  # our own server, by PID
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
