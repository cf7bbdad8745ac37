#!/usr/bin/env bash
# A cold wave of distinct small misses: every .info and .mod of MODULES
# modules fetched once, by CONNS concurrent keep-alive clients, from a fast
# local upstream (file://), into an empty store. What bounds it is the
# fills' disk syncs. BASELINE=path/to/old/gomodproxy runs an older build in
# the same run, alternating. Prints markdown for BENCHMARKS.md.
#
#   [BASELINE=bin] benches/cold-wave.sh [MODULES] [CONNS] [ROUNDS]
# gomodproxy --cores 1 on CPU 1; the client (python threads) on CPU 0.
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
# Seconds for one cold wave through the build at $1.
wave() {
    rm -rf "$work/data"
    taskset -c 1 "$1" serve --listen 127.0.0.1:18500 --data "$work/data" --cores 1 --upstream "file://$work/tree" --sumdb off >"$work/out" 2>"$work/err" &
    server=$!
    for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
    taskset -c 0 python3 - "$modules" "$conns" <<'PY'
import http.client, sys, threading, time
n, conns = int(sys.argv[1]), int(sys.argv[2])
paths = [f"/example.com/wave/m{i}/@v/v1.0.0.{ext}" for i in range(n) for ext in ("info", "mod")]
lock = threading.Lock(); bad = []
def work(mine):
    c = http.client.HTTPConnection("127.0.0.1", 18500, timeout=30)
    for p in mine:
        c.request("GET", p); r = c.getresponse(); r.read()
        if r.status != 200:
            with lock: bad.append((p, r.status))
t0 = time.perf_counter()
ts = [threading.Thread(target=work, args=(paths[k::conns],)) for k in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
print(f"{time.perf_counter() - t0:.3f}")
if bad: sys.exit(f"{len(bad)} failed: {bad[:3]}")
PY
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
