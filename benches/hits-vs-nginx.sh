#!/usr/bin/env bash
# Cache hits: gomodproxy vs nginx serving the same bytes from the same paths.
#
# Server pinned to CPU 1, load (wrk) pinned to CPU 0; gomodproxy and nginx
# alternate in each round so both see the same machine state. Only ratios
# within one run mean anything; absolute numbers vary from run to run.
#
#   benches/hits-vs-nginx.sh [SECONDS_PER_RUN] [CONNECTIONS...]
# Needs: nginx, wrk, python3, a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; shift || true
conns=("${@:-64 4000}"); read -r -a conns <<<"${conns[*]}"
work=$(mktemp -d /tmp/gomodproxy-bench.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000

# The same GOPROXY file tree feeds gomodproxy (as its upstream) and nginx (as its root).
python3 - "$work/tree" <<'PY'
import os, sys, zipfile, random
root = sys.argv[1]
def module(path, size):
    d = os.path.join(root, path, "@v"); os.makedirs(d)
    open(os.path.join(d, "list"), "w").write("v1.0.0\n")
    open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
    open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n")
    with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n\ngo 1.21\n")
        z.writestr(f"{path}@v1.0.0/p.go", "package p\n")
        z.writestr(f"{path}@v1.0.0/data.bin", random.Random(1).randbytes(size))
module("example.com/bench/small", 1 << 10)
module("example.com/bench/onemib", (1 << 20) - 400)
module("example.com/bench/fortymib", (40 << 20) - 400)
PY

cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 19000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    types { application/json info; application/zip zip; }
    default_type text/plain;
    server { listen 127.0.0.1:18081 reuseport backlog=4096; root $work/tree; }
}
NGINX
taskset -c 1 nginx -c "$work/nginx.conf"

taskset -c 1 ./target/release/gomodproxy serve --listen 127.0.0.1:18080 --data "$work/data" \
    --upstream "file://$work/tree" --cores 1 >"$work/gomodproxy.out" 2>"$work/gomodproxy.err" &
for _ in $(seq 100); do grep -q listening "$work/gomodproxy.out" 2>/dev/null && break; sleep 0.1; done
paths=(example.com/bench/small/@v/v1.0.0.info example.com/bench/onemib/@v/v1.0.0.zip example.com/bench/fortymib/@v/v1.0.0.zip)
for p in "${paths[@]}"; do  # warm gomodproxy's store and check both serve identical bytes
    a=$(curl -sf "http://127.0.0.1:18080/$p" | sha256sum); b=$(curl -sf "http://127.0.0.1:18081/$p" | sha256sum)
    [[ "$a" == "$b" ]] || { echo "bytes differ for $p" >&2; exit 1; }
done

# wrk latency units → microseconds
to_us() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1e6; else print n }'; }
run() { # url conns → "rps p99_us"
    local out; out=$(taskset -c 0 wrk -t1 -c"$2" -d"${secs}s" --latency "$1" 2>&1)
    local rps p99; rps=$(awk '/Requests\/sec/{print $2}' <<<"$out"); p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    echo "$rps $(to_us "$p99")"
}
echo "| object | conns | gomodproxy req/s | nginx req/s | throughput ratio | gomodproxy p99 | nginx p99 | p99 ratio |"
echo "|---|---|---|---|---|---|---|---|"
for p in "${paths[@]}"; do
    for c in "${conns[@]}"; do
        read -r g_rps g_p99 < <(run "http://127.0.0.1:18080/$p" "$c")
        read -r n_rps n_p99 < <(run "http://127.0.0.1:18081/$p" "$c")
        awk -v p="${p#example.com/bench/}" -v c="$c" -v gr="$g_rps" -v nr="$n_rps" -v gp="$g_p99" -v np="$n_p99" \
            'BEGIN{ printf "| %s | %d | %.0f | %.0f | %.2f | %.0f µs | %.0f µs | %.2f |\n", p, c, gr, nr, gr/nr, gp, np, gp/np }'
    done
done
