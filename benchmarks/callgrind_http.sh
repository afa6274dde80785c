#!/usr/bin/env bash
# User-space instructions per request of coring-http, counted by callgrind: repeatable where CPU
# timings on a shared machine are not. The server runs under valgrind on the epoll backend
# (valgrind does not follow io_uring's shared rings; the HTTP code above the backend is the
# same), pinned to CPU 0; coring-load drives it from CPU 1. Counting is switched on for the
# measured window only (after connects and a warm-up), then the total is divided by the
# requests coring-load saw answered in it.
#
#   benchmarks/callgrind_http.sh [BUILD] [CONNS] [DEPTH]     (default: build-release 100 16)
#
# Prints the per-request total and the top functions; the profile stays in
# build/bench-results/callgrind-http.out for callgrind_annotate.
set -euo pipefail
build=${1:-build-release}
conns=${2:-100}
depth=${3:-16}
port=$((20000 + RANDOM % 20000))
out=build/bench-results
mkdir -p "$out"
for tool in valgrind callgrind_control callgrind_annotate; do
    command -v $tool >/dev/null || { echo "callgrind_http: $tool not found (apt-get install valgrind)" >&2; exit 2; }
done
profile=$out/callgrind-http.out
rm -f "$profile" "$profile".*
taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
    "$build/apps/coring-http" --cores 1 --backend epoll --listen "127.0.0.1:$port" >"$out/callgrind-http.log" 2>&1 &
server=$!
trap 'kill -KILL $server 2>/dev/null || true' EXIT
load() {
    taskset -c 1 "$build/apps/coring-load" --protocol http --target "127.0.0.1:$port" --conns "$conns" --depth "$depth" \
        --quiet --backend uring --cores 1 "$@"
}
for _ in $(seq 100); do  # valgrind takes a few seconds to start the server
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
load --duration 1 --warmup 1 >/dev/null  # warm: connections, caches, the pool
callgrind_control -i on $server >/dev/null 2>&1
load --duration 4 --warmup 0 --json "$out/callgrind-http-load.json" >/dev/null
callgrind_control -i off $server >/dev/null 2>&1
kill -TERM $server
wait $server || true
trap - EXIT
requests=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['messages'])" "$out/callgrind-http-load.json")
total=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "coring-http (epoll, under callgrind), $conns connections x depth $depth: $requests requests," \
     "$total instructions: $((total / requests)) user instructions per request"
callgrind_annotate "$profile" 2>/dev/null | awk -v n="$requests" '
    /PROGRAM TOTALS/ { listing = 1; next }
    listing && /^[0-9,]+ +\( *[0-9.]+%\)/ && shown < 15 {
        ir = $1; gsub(",", "", ir); name = $0; sub(/^[0-9,]+ +\( *[0-9.]+%\) +/, "", name)
        printf "%8.0f  %s\n", ir / n, substr(name, 1, 110); shown++ }'
