#!/usr/bin/env bash
# The shared tier (--shared-store) in one run, against a real S3-compatible
# server (versitygw on loopback) and a local HTTP upstream:
#  1. what one request costs as an upstream fill with no shared tier (the
#     reference), as an upstream fill through the tier (node A, cold), as a
#     shared-tier hit (node B, empty store, same bucket) and as a local hit
#     (node B again), for small (.mod, .zip of ~1 KiB) and large (16 MiB .zip)
#     artifacts, one request at a time;
#  2. cross-node single-flight: 30 clients over three nodes asking for the
#     same cold large zips, three nodes sharing a bucket against three nodes
#     with no shared tier (each filling alone): upstream requests, upstream
#     bytes and wall time.
# Prints markdown for BENCHMARKS.md.
#
#   benches/shared-tier.sh [SMALL_MODULES] [LARGE_MODULES]
# Nodes run --cores 1 pinned to CPU 1; versitygw, the upstream and the
# clients on CPU 0. Needs: go (or $VERSITYGW), python3, curl,
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-40}; large=${2:-4}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
vgw=${VERSITYGW:-target/test-tools/versitygw}
if [[ ! -x $vgw ]]; then
    mkdir -p target/test-tools
    GOBIN=$(realpath target/test-tools) GOFLAGS=-mod=mod GOTOOLCHAIN=local go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
vgw=$(realpath "$vgw")
work=$(mktemp -d /tmp/gomodproxy-sharedbench.XXXXXX)
pids=()
# Nodes started in a command substitution are a subshell's children: their
# pids go to a file so that cleanup finds them too.
cleanup() {
    local nodes=()
    [[ -f $work/node-pids ]] && mapfile -t nodes <"$work/node-pids"
    kill "${pids[@]}" "${nodes[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

python3 - "$work/tree" "$small" "$large" <<'PY'
import io, json, os, random, sys, zipfile
root, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def module(path, files):
    d = os.path.join(root, path, "@v"); os.makedirs(d, exist_ok=True)
    gomod = f"module {path}\n\ngo 1.22\n"
    open(os.path.join(d, "list"), "w").write("v1.0.0\n")
    open(os.path.join(d, "v1.0.0.info"), "w").write(json.dumps({"Version": "v1.0.0", "Time": "2024-01-01T00:00:00Z"}))
    open(os.path.join(d, "v1.0.0.mod"), "w").write(gomod)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{path}@v1.0.0/go.mod", gomod)
        for name, data in files:
            z.writestr(f"{path}@v1.0.0/{name}", data)
    open(os.path.join(d, "v1.0.0.zip"), "wb").write(buf.getvalue())
for i in range(small):
    module(f"bench.example/small/m{i}", [("a.go", f"package m{i}\n// {'x' * 600}\n")])
for i in range(large):
    module(f"bench.example/large/m{i}", [("a.go", f"package m{i}\n"), ("data.bin", random.Random(i).randbytes(16 << 20))])
PY

mkdir -p "$work/s3/bench"
taskset -c 0 "$vgw" --port 127.0.0.1:18500 --access bench --secret bench-secret posix "$work/s3" >/dev/null 2>&1 &
pids+=($!)
# The upstream: a threaded static server that logs each request (to count them).
taskset -c 0 python3 - "$work/tree" 2>"$work/upstream.log" <<'PY' &
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are separate writes: without this, Nagle and the
    # client's delayed ACK add 40 ms to every request on a kept connection.
    disable_nagle_algorithm = True
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path)); sys.stderr.flush()
http.server.ThreadingHTTPServer(("127.0.0.1", 18501), functools.partial(H, directory=sys.argv[1])).serve_forever()
PY
pids+=($!)
ready() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
ready http://127.0.0.1:18500/
ready http://127.0.0.1:18501/
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
node() { # ADDR PREFIX|- DATA
    local shared=()
    # A server left on the port by an earlier run would answer for ours.
    if curl -s -o /dev/null "http://$1/"; then echo "something already listens on $1" >&2; exit 1; fi
    [[ $2 != - ]] && shared=(--shared-store "s3://bench/$2?endpoint=http://127.0.0.1:18500&region=us-east-1")
    GOSUMDB=off taskset -c 1 "$bin" serve --listen "$1" --admin-listen off --data "$3" --cores 1 --upstream http://127.0.0.1:18501 --sumdb off "${shared[@]}" >/dev/null 2>&1 &
    echo $! >>"$work/node-pids"
    ready "http://$1/metrics"
}
metric() { curl -s "http://$1/metrics" | awk -v m="gomodproxy_$2" '$1 == m { print $2 }'; }

node 127.0.0.2:18510 costs "$work/a"
node 127.0.0.3:18511 costs "$work/b"
node 127.0.0.4:18512 - "$work/c"
urls="$work/urls"
for i in $(seq 0 $((small - 1))); do
    echo "small-mod /bench.example/small/m$i/@v/v1.0.0.mod"
    echo "small-zip /bench.example/small/m$i/@v/v1.0.0.zip"
done >"$urls"
for i in $(seq 0 $((large - 1))); do echo "large-zip /bench.example/large/m$i/@v/v1.0.0.zip"; done >>"$urls"
timed() { # ADDR LABEL: one request at a time, prints "label kind ms"
    taskset -c 0 python3 - "$1" "$2" "$urls" <<'PY'
import http.client, sys, time
addr, label, urls = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.split(":")
c = http.client.HTTPConnection(host, int(port), timeout=120)
for line in open(urls):
    kind, path = line.split()
    t = time.perf_counter()
    c.request("GET", path); r = c.getresponse(); body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200: sys.exit(f"{path}: {r.status}")
    print(label, kind, f"{ms:.3f}")
PY
}
count=$(wc -l <"$urls")
timed 127.0.0.4:18512 "upstream fill, no shared tier" >"$work/costs"
timed 127.0.0.2:18510 "upstream fill" >>"$work/costs"
for _ in $(seq 600); do [[ $(metric 127.0.0.2:18510 shared_writes) -ge $count ]] && break; sleep 0.05; done
timed 127.0.0.3:18511 "shared-tier hit" >>"$work/costs"
timed 127.0.0.3:18511 "local hit" >>"$work/costs"
[[ $(metric 127.0.0.3:18511 shared_hits) -eq $count ]] || { echo "node B read $(metric 127.0.0.3:18511 shared_hits) of $count from the tier" >&2; exit 1; }

echo "### Cost of one request by tier ($small small modules, $large large; one request at a time)"
echo
echo "| answered as | artifact | median ms | p90 ms |"
echo "|---|---|---:|---:|"
python3 - "$work/costs" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    *label, kind, ms = line.split()
    rows[(" ".join(label), kind)].append(float(ms))
names = {"small-mod": "small .mod", "small-zip": "small .zip (~1 KiB)", "large-zip": "large .zip (16 MiB)"}
for kind in ["small-mod", "small-zip", "large-zip"]:
    for label in ["upstream fill, no shared tier", "upstream fill", "shared-tier hit", "local hit"]:
        v = sorted(rows[(label, kind)])
        p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
        print(f"| {label} | {names[kind]} | {statistics.median(v):.2f} | {p90:.2f} |")
PY

# 2. Cross-node single-flight: 30 clients, 10 per node, each asking for every
# large zip (in its own order), cold.
wave() { # LABEL PREFIX|- PORT0
    local label=$1 prefix=$2 p=$3 addrs=()
    for k in 0 1 2; do
        node "127.0.0.$((k + 5)):$((p + k))" "$prefix" "$work/wave-$p-$k"
        addrs+=("127.0.0.$((k + 5)):$((p + k))")
    done
    local before
    before=$(grep -c '\.zip' "$work/upstream.log" || true)
    taskset -c 0 python3 - "$label" "$large" "${addrs[@]}" <<'PY'
import http.client, random, sys, threading, time
label, large, addrs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
paths = [f"/bench.example/large/m{i}/@v/v1.0.0.zip" for i in range(large)]
errors = []
def client(n):
    host, port = addrs[n % 3].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=300)
    order = paths[:]; random.Random(n).shuffle(order)
    for p in order:
        c.request("GET", p); r = c.getresponse(); r.read()
        if r.status != 200: errors.append((p, r.status))
t = time.perf_counter()
ts = [threading.Thread(target=client, args=(n,)) for n in range(30)]
[x.start() for x in ts]; [x.join() for x in ts]
print(f"{label} {time.perf_counter() - t:.2f}")
if errors: sys.exit(f"errors: {errors[:5]}")
PY
    local after
    after=$(grep -c '\.zip' "$work/upstream.log" || true)
    echo "upstream $((after - before))"
}
shared_out=$(wave "shared" flight 18520)
alone_out=$(wave "alone" - 18530)
zip_bytes=$(stat -c %s "$work/tree/bench.example/large/m0/@v/v1.0.0.zip")
echo
echo "### Cross-node single-flight (30 clients over 3 nodes, $large cold 16 MiB zips each)"
echo
echo "| three nodes | upstream .zip requests | upstream MiB | wall s |"
echo "|---|---:|---:|---:|"
for out in "$shared_out" "$alone_out"; do
    label=$(awk 'NR==1 { print $1 }' <<<"$out"); wall=$(awk 'NR==1 { print $2 }' <<<"$out")
    reqs=$(awk '$1 == "upstream" { print $2 }' <<<"$out")
    name=$([[ $label == shared ]] && echo "sharing a bucket" || echo "no shared tier (each filling alone)")
    echo "| $name | $reqs | $((reqs * zip_bytes / 1048576)) | $wall |"
done
