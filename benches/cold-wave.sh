#!/usr/bin/env bash
# A cold wave of distinct small misses: every .info and .mod of MODULES
# modules fetched once, by CONNS concurrent keep-alive clients, from a fast
# local upstream (file://), into an empty store. What bounds it is the
# fills' disk syncs. BASELINE=path/to/old/gomodproxy runs an older build in
# the same run, alternating. Prints markdown for BENCHMARKS.md.
#
#   [BASELINE=bin] benches/cold-wave.sh [MODULES] [CONNS] [ROUNDS]
# gomodproxy --cores 1 on CPU 1; the client (curl --parallel) on CPU 0.
# Needs: python3, curl 7.66+, bc, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
modules=${1:-1000}; conns=${2:-64}; rounds=${3:-3}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
work=$(mktemp -d /tmp/gomodproxy-wave.XXXXXX)
server=""
cleanup() { if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work/tree" "$modules" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    path = f"example.com/wave/m{i}"
    d = os.path.join(root, path, "@v"); os.makedirs(d)
    open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
    open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n")
PY
# Every artifact once, for curl -K (-f: a failed fill fails the wave).
for ((i = 0; i < modules; i++)); do
    for ext in info mod; do
        printf 'url = "http://127.0.0.1:18500/example.com/wave/m%d/@v/v1.0.0.%s"\noutput = "/dev/null"\nfail\n' "$i" "$ext"
    done
done >"$work/urls"
# utime + stime of process $1, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Seconds for one cold wave through the build at $1.
wave() {
    rm -rf "$work/data"
    : >"$work/out"
    taskset -c 1 "$1" serve --listen 127.0.0.1:18500 --data "$work/data" --cores 1 --upstream "file://$work/tree" --sumdb off >"$work/out" 2>"$work/err" &
    server=$!
    # Ready when it answers (a lingering socket of the last run accepts too).
    for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18500/healthz && break; sleep 0.05; done
    local t0 t1 cpu0 cpu1
    cpu0=$(cpu_ticks "$server")
    t0=$(date +%s.%N)
    # curl's parallel mode: one process, CONNS keep-alive connections.
    taskset -c 0 curl --no-progress-meter -Z --parallel-max "$conns" -K "$work/urls" >/dev/null 2>"$work/curl.err" || { cat "$work/curl.err" >&2; return 1; }
    t1=$(date +%s.%N)
    cpu1=$(cpu_ticks "$server")
    # The server's CPU time (all its threads) for the wave, on stderr.
    echo "server CPU $(echo "($cpu1 - $cpu0) / $(getconf CLK_TCK)" | bc -l | cut -c1-5) s over $(echo "$t1 - $t0" | bc | cut -c1-5) s ($1)" >&2
    echo "$t1 - $t0" | bc
    kill "$server"; wait "$server" 2>/dev/null || true
    server=""
}
new=(); old=()
for ((r = 0; r < rounds; r++)); do
    new+=("$(wave "$bin")")
    if [[ -n "${BASELINE:-}" ]]; then old+=("$(wave "$(realpath "$BASELINE")")"); fi
done
python3 - "$modules" "$conns" "$rounds" "${new[*]}" "${old[*]:-}" <<'PY'
import statistics, sys
n, conns, rounds = int(sys.argv[1]), sys.argv[2], sys.argv[3]
new = [float(x) for x in sys.argv[4].split()]
old = [float(x) for x in sys.argv[5].split()] if len(sys.argv) > 5 and sys.argv[5].strip() else []
m = statistics.median
print(f"### Cold wave: {2 * n} distinct .info/.mod misses, {conns} keep-alive clients, median of {rounds}")
print()
print("| build | wall time | fills/s |")
print("|---|---|---|")
if old:
    print(f"| baseline | {m(old):.2f} s | {2 * n / m(old):.0f} |")
print(f"| this build | {m(new):.2f} s | {2 * n / m(new):.0f} |")
if old:
    print(f"| **speed-up** | **{m(old) / m(new):.2f}×** | |")
PY
