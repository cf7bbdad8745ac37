#!/usr/bin/env bash
# What first-read verification costs: a 40 MiB zip stored in a sealed
# segment, read by the first request after a cold start of the server
# (the page cache stays warm: the cost measured is the hash, not the disk).
# BASELINE=path/to/old/gomodproxy runs a build without first-read checks in
# the same run, alternating. Prints markdown for BENCHMARKS.md.
#
#   [BASELINE=bin] benches/first-read.sh [ROUNDS]
# gomodproxy --cores 1 on CPU 1 (--scrub-rate off, so the request does the
# check); curl on CPU 0. Needs: python3, curl, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
work=$(mktemp -d /tmp/gomodproxy-firstread.XXXXXX)
port=18510
server=""
cleanup() { if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work/tree" <<'PY'
import io, os, sys, zipfile
root = sys.argv[1]
m, v = "example.com/firstread/big", "v1.0.0"
d = os.path.join(root, m, "@v"); os.makedirs(d)
open(os.path.join(d, v + ".info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
gomod = f"module {m}\n"
open(os.path.join(d, v + ".mod"), "w").write(gomod)
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{m}@{v}/go.mod", gomod)
    z.writestr(f"{m}@{v}/data.bin", os.urandom(40 << 20))
open(os.path.join(d, v + ".zip"), "wb").write(buf.getvalue())
PY
url="http://127.0.0.1:$port/example.com/firstread/big/@v/v1.0.0.zip"
# start BIN DATA [EXTRA...]: runs the server in the background, waits until it answers.
start() {
    local b=$1 data=$2; shift 2
    taskset -c 1 "$b" serve --listen 127.0.0.1:$port --admin-listen off --data "$data" --cores 1 \
        --upstream "file://$work/tree" --sumdb off "$@" >"$work/out" 2>"$work/err" &
    server=$!
    for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.05; done
    cat "$work/err" >&2; return 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }
# A store holding the zip in a sealed segment (filled, then sealed by the next start).
prepare() {
    local b=$1 data=$2; shift 2
    rm -rf "$data"
    start "$b" "$data" "$@"; curl -sf -o /dev/null "$url"; stop
    start "$b" "$data" "$@"; stop
}
# One cold start: "first_ttfb first_total second_ttfb second_total" in ms.
measure() {
    local b=$1 data=$2; shift 2
    start "$b" "$data" "$@"
    local first second
    first=$(taskset -c 0 curl -sf -o /dev/null -w '%{time_starttransfer} %{time_total}' "$url")
    second=$(taskset -c 0 curl -sf -o /dev/null -w '%{time_starttransfer} %{time_total}' "$url")
    stop
    echo "$first $second"
}
new_args=(--scrub-rate off)
prepare "$bin" "$work/new" "${new_args[@]}"
if [[ -n "${BASELINE:-}" ]]; then prepare "$(realpath "$BASELINE")" "$work/old"; fi
new=(); old=()
for ((r = 0; r < rounds; r++)); do
    new+=("$(measure "$bin" "$work/new" "${new_args[@]}")")
    if [[ -n "${BASELINE:-}" ]]; then old+=("$(measure "$(realpath "$BASELINE")" "$work/old")"); fi
done
python3 - "$rounds" "$(printf '%s;' "${new[@]}")" "$(printf '%s;' "${old[@]:-}")" <<'PY'
import statistics, sys
def rows(s):
    return [[float(x) * 1000 for x in r.split()] for r in s.split(";") if r.strip()]
new, old = rows(sys.argv[2]), rows(sys.argv[3])
med = lambda rs, i: statistics.median(r[i] for r in rs)
print(f"40 MiB zip from a sealed segment, first request after a cold start, median of {sys.argv[1]} (ms):\n")
print("| build | first: time to first byte | first: total | second: time to first byte | second: total |")
print("|---|---|---|---|---|")
for name, rs in (("before (no first-read check)", old), ("first-read check", new)):
    if rs:
        print(f"| {name} | {med(rs,0):.1f} | {med(rs,1):.1f} | {med(rs,2):.1f} | {med(rs,3):.1f} |")
PY
