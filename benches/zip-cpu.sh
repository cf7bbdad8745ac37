#!/usr/bin/env bash
# Server CPU per GiB of large zip hits (OBJECT=info: per small .info hit):
# gomodproxy against nginx (1 worker,
# sendfile on, tcp_nopush) serving the same file, and optionally against a
# baseline build, in alternating rounds of the same run. The client is the
# bound (loadgen, closed loop), so the figure that matters is the server's
# CPU time per byte, read from /proc/PID/stat around each turn.
# Prints markdown for BENCHMARKS.md.
#
#   benches/zip-cpu.sh [SECONDS_PER_TURN] [ROUNDS] [CONNECTIONS] [ZIP_MIB]
#   BASELINE=/path/to/older/gomodproxy benches/zip-cpu.sh ...
#   OBJECT=info benches/zip-cpu.sh 4 5 64   # server CPU per .info request
# Servers on CPU 1 (gomodproxy --cores 1), loadgen on CPU 0.
# Needs: nginx, python3, curl, `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/nginx-conf.sh
source benches/nginx-conf.sh
turn=${1:-5}; rounds=${2:-5}; conns=${3:-64}; mib=${4:-12}
lg=$(realpath ./target/release/loadgen)
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
work=$(mktemp -d /tmp/gomodproxy-zipcpu.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged
pids=()
trap nginx_bench_cleanup EXIT
ulimit -n 20000

python3 - "$work/tree" "$mib" <<'PY'
import os, random, sys, zipfile
root, mib = sys.argv[1], int(sys.argv[2])
path = "example.com/bench/zip"
d = os.path.join(root, path, "@v"); os.makedirs(d)
open(os.path.join(d, "list"), "w").write("v1.0.0\n")
open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n")
with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n\ngo 1.21\n")
    z.writestr(f"{path}@v1.0.0/data.bin", random.Random(1).randbytes((mib << 20) - 400))
PY
zip=/example.com/bench/zip/@v/v1.0.0.zip
object=${OBJECT:-zip}
case $object in
    zip) path=$zip ;;
    info) path=/example.com/bench/zip/@v/v1.0.0.info ;;
    *) echo "OBJECT is zip or info" >&2; exit 1 ;;
esac

nginx_conf "$work" "    types { application/zip zip; }
    server { listen 127.0.0.1:18681 reuseport; root $work/tree; }" >"$work/nginx.conf"
if curl -s -o /dev/null http://127.0.0.1:18681/ || curl -s -o /dev/null http://127.0.0.1:18680/ || curl -s -o /dev/null http://127.0.0.1:18682/; then
    echo "something already listens on a port of this bench (18680-18682)" >&2
    exit 1
fi
taskset -c 1 nginx -c "$work/nginx.conf"
start() { # NAME PORT BIN [ARGS...]
    local name=$1 port=$2 exe=$3
    shift 3
    taskset -c 1 "$exe" serve --listen "127.0.0.1:$port" --data "$work/data-$name" --cores 1 --upstream "file://$work/tree" \
        --sumdb off "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.05; done
    echo "$name did not start" >&2
    exit 1
}
# The baseline may predate --admin-listen (and then binds no admin port);
# this build turns its own off so the two never compete for one.
start gomodproxy 18680 "$bin" --admin-listen off
targets=("gomodproxy=18680" "nginx=18681")
if [[ -n "${BASELINE:-}" ]]; then
    start baseline 18682 "$BASELINE"
    targets+=("baseline=18682")
fi
want=$(sha256sum <"$work/tree/example.com/bench/zip/@v/v1.0.0.zip")
for t in "${targets[@]}"; do
    got=$(curl -sf "http://127.0.0.1:${t#*=}$zip" | sha256sum)
    [[ "$got" == "$want" ]] || { echo "${t%%=*} serves other bytes" >&2; exit 1; }
done
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
pid_of() { case $1 in nginx) echo "$nginx_worker" ;; gomodproxy) echo "${pids[0]}" ;; baseline) echo "${pids[1]}" ;; esac; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
: >"$work/turns"
for _ in $(seq "$rounds"); do
    for t in "${targets[@]}"; do
        name=${t%%=*}; pid=$(pid_of "$name")
        before=$(ticks "$pid")
        taskset -c 0 "$lg" run --target "http://127.0.0.1:${t#*=}" --path "$path" -c "$conns" -d "${turn}s" -q \
            --json "$work/run.json" >/dev/null 2>&1 || true
        after=$(ticks "$pid")
        python3 - "$work/run.json" "$name" "$((after - before))" "$hz" >>"$work/turns" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
gib = run["body_bytes"] / 2**30
cpu_ms = int(sys.argv[3]) * 1000 / int(sys.argv[4])
print(sys.argv[2], f"{gib:.3f}", f"{cpu_ms:.0f}", f"{run['throughput_mib_s']:.0f}", f"{run['latency_ms']['p99']:.2f}", run["errors"]["total"] if isinstance(run["errors"], dict) else run["errors"], run["requests"], f"{run['throughput_rps']:.0f}")
PY
    done
done
if [[ $object == zip ]]; then
    echo "### Large zip hits: server CPU per GiB ($mib MiB zip, $conns connections, $rounds rounds x ${turn}s per target, alternating)"
    echo
    echo "| server | GiB sent | server CPU | CPU ms per GiB | MiB/s | p99 ms | vs nginx (CPU per GiB) |"
else
    echo "### .info hits: server CPU per request ($conns connections, $rounds rounds x ${turn}s per target, alternating)"
    echo
    echo "| server | requests | server CPU | CPU µs per request | req/s | p99 ms | vs nginx (CPU per request) |"
fi
echo "|---|---:|---:|---:|---:|---:|---:|"
python3 - "$work/turns" "$object" <<'PY'
import collections, sys
info = sys.argv[2] == "info"
agg = collections.defaultdict(lambda: [0.0, 0.0, [], [], 0, []])
for line in open(sys.argv[1]):
    name, gib, cpu, mibs, p99, _errors, requests, rps = line.split()
    a = agg[name]; a[0] += float(gib); a[1] += float(cpu); a[2].append(float(mibs)); a[3].append(float(p99)); a[4] += int(requests); a[5].append(float(rps))
# CPU ms per GiB, or CPU µs per request.
per = {n: (a[1] * 1000 / max(a[4], 1)) if info else a[1] / max(a[0], 1e-9) for n, a in agg.items()}
for name in ["gomodproxy", "baseline", "nginx"]:
    if name not in agg: continue
    a = agg[name]
    med = lambda v: sorted(v)[len(v) // 2]
    amount, rate = (f"{a[4]:,}", f"{med(a[5]):,.0f}") if info else (f"{a[0]:.1f}", f"{med(a[2]):.0f}")
    print(f"| {name} | {amount} | {a[1]/1000:.2f} s | {per[name]:.{1 if info else 0}f} | {rate} | {med(a[3]):.2f} | **{per[name]/per['nginx']:.2f}** |")
PY
