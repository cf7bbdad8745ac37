#!/usr/bin/env bash
# gomodproxy vs nginx serving the same bytes from the same paths, measured
# with loadgen (compare, search and hold modes). Prints markdown for
# BENCHMARKS.md.
#
# Server (gomodproxy --cores 1, nginx 1 worker, sendfile on, access log off)
# pinned to CPU 1; loadgen pinned to CPU 0. Targets alternate within each
# compare, so only the ratios of one run mean anything.
#
#   benches/compare-nginx.sh [SECONDS_PER_TURN] [ROUNDS]
#   BASELINE=/path/to/older/gomodproxy benches/compare-nginx.sh ...
# With BASELINE, that build serves the same tree too (also on CPU 1) and
# joins the hit comparisons, so a change's before/after is measured in one
# run against the same nginx; the capacity search and hold stay two-way.
# Needs: nginx, python3, `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/nginx-conf.sh
source benches/nginx-conf.sh
turn=${1:-4}; rounds=${2:-3}
lg=./target/release/loadgen
work=$(mktemp -d /tmp/gomodproxy-bench.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged
base_pid=
cleanup() { kill "$gmp_pid" ${base_pid:+"$base_pid"} 2>/dev/null || true; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 20000

# One GOPROXY file tree: gomodproxy's upstream and nginx's document root.
python3 - "$work/tree" <<'PY'
import os, sys, zipfile, random
root = sys.argv[1]
def module(path, size):
    d = os.path.join(root, path, "@v"); os.makedirs(d)
    open(os.path.join(d, "list"), "w").write("v1.0.0\n")
    open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
    open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n\nrequire (\n\texample.com/dep/one v1.2.3\n\texample.com/dep/two v0.4.0\n)\n")
    with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n\ngo 1.21\n")
        z.writestr(f"{path}@v1.0.0/p.go", "package p\n")
        z.writestr(f"{path}@v1.0.0/data.bin", random.Random(1).randbytes(size))
module("example.com/bench/small", 1 << 10)
module("example.com/bench/onemib", (1 << 20) - 400)
module("example.com/bench/fortymib", (40 << 20) - 400)
for i in range(200):  # the hit mix for capacity search: many small modules
    module(f"example.com/mix/m{i}", 4 << 10 if i % 10 else 256 << 10)
PY

nginx_conf "$work" "    keepalive_timeout 75s;
    types { application/json info; application/zip zip; }
    default_type text/plain;
    server { listen 127.0.0.1:18081 reuseport backlog=4096; root $work/tree; }" >"$work/nginx.conf"
taskset -c 1 nginx -c "$work/nginx.conf"
taskset -c 1 ./target/release/gomodproxy serve --listen 127.0.0.1:18080 --admin-listen off --data "$work/data" \
    --upstream "file://$work/tree" --sumdb off --cores 1 >"$work/gomodproxy.out" 2>"$work/gomodproxy.err" &
gmp_pid=$!
for _ in $(seq 100); do grep -q listening "$work/gomodproxy.out" 2>/dev/null && break; sleep 0.1; done
targets=(--target gomodproxy=http://127.0.0.1:18080 --target nginx=http://127.0.0.1:18081)
if [[ -n "${BASELINE:-}" ]]; then
    taskset -c 1 "$BASELINE" serve --listen 127.0.0.1:18082 --data "$work/data-baseline" \
        --upstream "file://$work/tree" --sumdb off --cores 1 >"$work/baseline.out" 2>"$work/baseline.err" &
    base_pid=$!
    for _ in $(seq 100); do grep -q listening "$work/baseline.out" 2>/dev/null && break; sleep 0.1; done
    targets+=(--target baseline=http://127.0.0.1:18082)
fi

# Warm gomodproxy's store with every artifact and check both serve identical bytes.
find "$work/tree" -name 'v1.0.0.*' | sed "s|^$work/tree/||" | while read -r p; do
    a=$(curl -sf "http://127.0.0.1:18080/$p" | sha256sum); b=$(curl -sf "http://127.0.0.1:18081/$p" | sha256sum)
    [[ "$a" == "$b" ]] || { echo "bytes differ for $p" >&2; exit 1; }
    if [[ -n "${BASELINE:-}" ]]; then
        c=$(curl -sf "http://127.0.0.1:18082/$p" | sha256sum)
        [[ "$a" == "$c" ]] || { echo "baseline bytes differ for $p" >&2; exit 1; }
    fi
done
find "$work/tree/example.com/mix" -name 'v1.0.0.info' | sed "s|^$work/tree/||; s|/@v/v1.0.0.info|@v1.0.0|" >"$work/mix.modules"

compare() { # path conns timeout → one markdown row
    taskset -c 0 $lg compare "${targets[@]}" --path "$1" -c "$2" -d "${turn}s" --rounds "$rounds" \
        --timeout "$3" --processes auto --source-ips auto -q --json "$work/c.json" >/dev/null 2>&1 || true
    python3 - "$work/c.json" "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); t = {x["label"]: x for x in d["compare"]["targets"]}
g, n = t["gomodproxy"], t["nginx"]
obj = sys.argv[2].replace("/example.com/bench/", "")
row = (f"| {obj} | {sys.argv[3]} | {g['throughput_rps']:,.0f} | {n['throughput_rps']:,.0f} | **{g['throughput_rps']/max(n['throughput_rps'],1e-9):.2f}** "
       f"| {g['p99_ms']:.2f} ms | {n['p99_ms']:.2f} ms | **{g['p99_ms']/max(n['p99_ms'],1e-9):.2f}** | ±{100*g['throughput_cv']:.0f}% / ±{100*n['throughput_cv']:.0f}% | {g['error_rate']:.1%} / {n['error_rate']:.1%} |")
if "baseline" in t:  # this build against the baseline build, same run
    b = t["baseline"]
    row += (f" {b['throughput_rps']/max(n['throughput_rps'],1e-9):.2f} | **{g['throughput_rps']/max(b['throughput_rps'],1e-9):.2f}** "
            f"| {b['p99_ms']/max(n['p99_ms'],1e-9):.2f} | **{g['p99_ms']/max(b['p99_ms'],1e-9):.2f}** |")
print(row)
PY
}
echo "### Hits: gomodproxy vs nginx ($rounds rounds × ${turn}s per target, alternating)"
echo
head="| object | conns | gomodproxy req/s | nginx req/s | throughput ratio | gomodproxy p99 | nginx p99 | p99 ratio (lower is better) | spread over rounds | errors |"
rule="|---|---|---|---|---|---|---|---|---|---|"
if [[ -n "${BASELINE:-}" ]]; then
    head+=" baseline throughput vs nginx | this build vs baseline, throughput | baseline p99 vs nginx | this build vs baseline, p99 |"
    rule+="---|---|---|---|"
fi
echo "$head"
echo "$rule"
for c in 64 4000; do
    compare /example.com/bench/small/@v/v1.0.0.info "$c" 10s
    compare /example.com/bench/small/@v/v1.0.0.mod "$c" 10s
    compare /example.com/bench/onemib/@v/v1.0.0.zip "$c" 30s
done
# 40 MiB at thousands of connections means tens of GiB in flight per turn;
# 256 connections already keep 10 GiB queued.
for c in 64 256; do compare /example.com/bench/fortymib/@v/v1.0.0.zip "$c" 60s; done
# Thousands of connections on 40 MiB zips: one round of 60 s turns, so that a
# whole wave of responses (2000 x 40 MiB) completes within a turn.
(turn=60 rounds=1; compare /example.com/bench/fortymib/@v/v1.0.0.zip 2000 120s)

echo
echo "### Capacity search: hit mix (200 modules, Zipf 1.1, info/mod/zip; 10% of zips 256 KiB, the rest 4 KiB), p99 SLO 5 ms"
echo
echo "| server | highest rate that held | p99 there | steps |"
echo "|---|---|---|---|"
for t in gomodproxy=http://127.0.0.1:18080 nginx=http://127.0.0.1:18081; do
    taskset -c 0 $lg search --target "${t#*=}" --modules "$work/mix.modules" --mix list=0,info=1,mod=1,zip=1 \
        --zipf 1.1 --slo-p99 5ms -c 256 --start 2000 --factor 1.5 --refine 3 --step-duration 3s --max-steps 16 \
        -q --json "$work/s.json" >"$work/s.txt" 2>&1 || true
    python3 - "$work/s.json" "${t%%=*}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["search"]
steps = s["steps"]; best = [x for x in steps if x["step"] == s.get("best_step")]
p99 = best[0]["p99_ms"] if best else float("nan")
cpu = max(x["client_cpu_cores"] for x in steps) if steps else 0
print(f"| {sys.argv[2]} | {s['best_rate'] or 0:,.0f} req/s | {p99:.2f} ms | {len(steps)} ({s['stopped_because']}; loadgen peak CPU {cpu:.2f} cores) |")
PY
done

echo
echo "### Memory per idle keep-alive connection (gomodproxy, the most connections this host allows)"
echo
taskset -c 0 $lg hold --target http://127.0.0.1:18080 --path /healthz -c 19000 -d 15s --processes auto --source-ips auto \
    --watch-pid "$gmp_pid" -q --json "$work/h.json" >/dev/null 2>&1 || true
python3 - "$work/h.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["hold"]
srv = h["server_bytes_per_connection"]; slab = (h["kernel_slab_at_peak"] - h["kernel_slab_before"]) / max(h["peak_open"], 1)
tcp = (h["kernel_tcp_mem_at_peak"] - h["kernel_tcp_mem_before"]) / max(h["peak_open"], 1)
print(f"- held {h['peak_open']:,} connections ({h['server_accepted_at_peak']:,} accepted by the server, {h['accept_queue_at_peak']:,} in its accept queue)")
print(f"- gomodproxy RSS: {h['server_rss_before']/2**20:.1f} MiB → {h['server_rss_at_peak']/2**20:.1f} MiB = **{srv:,.0f} bytes per connection**")
print(f"- kernel slab, machine-wide, both ends of each loopback connection: **{slab:,.0f} bytes per connection**; TCP buffer pages: {tcp:,.0f} bytes per connection (idle sockets hold no data)")
per = srv + slab / 2
print(f"- server side ≈ {srv:,.0f} + {slab/2:,.0f} (half the slab) = {per:,.0f} bytes per idle connection → 1,000,000 connections ≈ {per*1e6/2**30:.1f} GiB")
PY
