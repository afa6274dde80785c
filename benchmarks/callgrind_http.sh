#!/usr/bin/env bash
# User-space instructions per request of coring-http, counted by callgrind: repeatable where CPU
# timings on a shared machine are not. The server runs under valgrind on the epoll backend
# (valgrind does not follow io_uring's shared rings; the HTTP code above the backend is the
# same), pinned to CPU 0; coring-load drives it from CPU 1. After a warm-up run, two runs are
# counted, 2 s and 6 s long, each with its own connects and teardown: the difference of their
# instructions over the difference of their requests is the cost of a request, with what every
# run pays once (connects, closes, the requests still in flight at its end) cancelled out.
#
#   benchmarks/callgrind_http.sh [BUILD] [CONNS] [DEPTH]     (default: build-release 100 16)
#
# Prints the per-request figure and the top functions; the profiles stay in
# build/bench-results/callgrind-http.out.{1,2} for callgrind_annotate.
set -euo pipefail
build=${1:-build-release}
conns=${2:-100}
depth=${3:-16}
port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768 up)
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
up=false
for _ in $(seq 100); do  # valgrind takes a few seconds to start the server
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=true; break; fi
    sleep 0.1
done
$up || { echo "callgrind_http: the server did not start; see $out/callgrind-http.log" >&2; exit 1; }
load --duration 1 --warmup 1 >/dev/null  # warm: caches, the pool, the frame slabs
callgrind_control -i on $server >/dev/null 2>&1
load --duration 2 --warmup 0 --json "$out/callgrind-http-a.json" >/dev/null
callgrind_control -d $server >/dev/null 2>&1  # part 1: the 2 s run
load --duration 6 --warmup 0 --json "$out/callgrind-http-b.json" >/dev/null
callgrind_control -d $server >/dev/null 2>&1  # part 2: the 6 s run
callgrind_control -i off $server >/dev/null 2>&1
kill -TERM $server
wait $server || true
trap - EXIT
messages() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['messages'])" "$1"; }
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
a_req=$(messages "$out/callgrind-http-a.json"); b_req=$(messages "$out/callgrind-http-b.json")
a_ir=$(total "$profile.1"); b_ir=$(total "$profile.2")
if [ -z "$a_ir" ] || [ -z "$b_ir" ] || [ "$b_req" -le "$a_req" ]; then
    echo "callgrind_http: no usable counts (runs: $a_req and $b_req requests; profiles $profile.1, $profile.2)" >&2
    exit 1
fi
echo "coring-http (epoll, under callgrind), $conns connections x depth $depth: runs of $a_req and $b_req requests," \
     "$a_ir and $b_ir instructions: $(( (b_ir - a_ir) / (b_req - a_req) )) user instructions per request"
echo "the 6 s run's top functions, instructions per request (its connects and teardown included):"
callgrind_annotate "$profile.2" 2>/dev/null | awk -v n="$b_req" '
    /PROGRAM TOTALS/ { listing = 1; next }
    listing && /^[0-9,]+ +\( *[0-9.]+%\)/ && shown < 15 {
        ir = $1; gsub(",", "", ir); name = $0; sub(/^[0-9,]+ +\( *[0-9.]+%\) +/, "", name)
        printf "%8.0f  %s\n", ir / n, substr(name, 1, 110); shown++ }'
