#!/usr/bin/env bash
# What checksum verification adds to a cold fill: the same cold .zip and
# .mod fills with `--sumdb NAME+HASH+KEY` (verified) and `--sumdb off`
# (feature off: no database; the go.sum hash of each file is still kept),
# against one file upstream that also serves a signed test
# log under /sumdb/NAME/. Prints markdown for BENCHMARKS.md.
#
# gomodproxy --cores 1 on CPU 1; upstream (python http.server) and client on
# CPU 0 (a threaded python server). Each round starts both servers with empty stores and fetches every
# module's .mod and .zip once, sequentially, alternating which server goes
# first; latencies are per request, from curl.
#
#   [DELAY_MS=N] [BIN=path/to/gomodproxy] benches/verify-fills.sh [MODULES] [ROUNDS]
# DELAY_MS makes the upstream wait that long before each answer, as a
# remote one would (one round trip per request).
# Needs: python3, go, curl, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
modules=${1:-200}; rounds=${2:-3}
bin=${BIN:-./target/release/gomodproxy}
work=$(mktemp -d /tmp/gomodproxy-verify.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work/tree" "$modules" <<'PY'
import os, sys, zipfile, random
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    path = f"example.com/verify/m{i}"
    d = os.path.join(root, path, "@v"); os.makedirs(d)
    open(os.path.join(d, "list"), "w").write("v1.0.0\n")
    open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
    open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n")
    with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n\ngo 1.21\n")
        z.writestr(f"{path}@v1.0.0/p.go", "package p\n")
        z.writestr(f"{path}@v1.0.0/data.bin", random.Random(i).randbytes(32 << 10))
PY
specs=(); for ((i = 0; i < modules; i++)); do specs+=("example.com/verify/m$i@v1.0.0"); done
gen="$PWD/tests/sumdb_gen.go"
key=$(cd "$work" && GOFLAGS='' GOPROXY=off go run "$gen" "$work/tree" sum.bench.example "${specs[@]}")
DELAY_MS=${DELAY_MS:-0} taskset -c 0 python3 - "$work/tree" <<'PY' >/dev/null 2>&1 &
import functools, http.server, os, sys, time
delay = float(os.environ["DELAY_MS"]) / 1000
class Slow(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(delay)
        super().do_GET()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18300), functools.partial(Slow, directory=sys.argv[1])).serve_forever()
PY
pids+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18300/ && break; sleep 0.1; done

start() { # label port sumdb → pid
    rm -rf "$work/data-$1"
    taskset -c 1 "$bin" serve --listen "127.0.0.1:$2" --admin-listen off --data "$work/data-$1" --cores 1 \
        --upstream http://127.0.0.1:18300 --sumdb "$3" --breaker-failures 0 >"$work/$1.out" 2>"$work/$1.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q listening "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
}
fetch_all() { # port label → latencies (ms), one per line, into $work/lat-label
    for ((i = 0; i < modules; i++)); do
        for ext in mod zip; do
            taskset -c 0 curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$1/example.com/verify/m$i/@v/v1.0.0.$ext"
        done
    done | awk -v f="$work/lat-$2" '$1 != 200 { bad++ } { print $2 * 1000 >> f } END { if (bad) { print bad " failed" > "/dev/stderr"; exit 1 } }'
}
for ((r = 0; r < rounds; r++)); do
    start verified 18301 "$key"; start unverified 18302 off
    if ((r % 2)); then fetch_all 18302 unverified; fetch_all 18301 verified; else fetch_all 18301 verified; fetch_all 18302 unverified; fi
    kill "${pids[@]:1}" 2>/dev/null || true; wait "${pids[@]:1}" 2>/dev/null || true; pids=("${pids[0]}")
done
python3 - "$work" "$modules" "$rounds" <<'PY'
import sys, statistics
work, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(label):
    return sorted(float(x) for x in open(f"{work}/lat-{label}"))
v, p = load("verified"), load("unverified")
def pct(xs, q): return xs[min(len(xs) - 1, int(q * len(xs)))]
import os
delay = os.environ.get("DELAY_MS", "0")
print(f"### Cold fills, verified against the checksum database vs no database ({n} modules × .mod + .zip, {rounds} rounds, upstream delay {delay} ms)")
print()
print("| | median | p90 | p99 | mean |")
print("|---|---|---|---|---|")
for name, xs in (("verified (`--sumdb NAME+HASH+KEY`)", v), ("no database (`--sumdb off`)", p)):
    print(f"| {name} | {pct(xs, .5):.2f} ms | {pct(xs, .9):.2f} ms | {pct(xs, .99):.2f} ms | {statistics.mean(xs):.2f} ms |")
print(f"| ratio | **{pct(v, .5) / pct(p, .5):.2f}** | {pct(v, .9) / pct(p, .9):.2f} | {pct(v, .99) / pct(p, .99):.2f} | {statistics.mean(v) / statistics.mean(p):.2f} |")
PY
