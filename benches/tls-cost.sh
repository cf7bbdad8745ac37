#!/usr/bin/env bash
# What TLS costs: gomodproxy over --tls-listen against the same build over
# plain HTTP, and nginx (1 worker, the same certificate, ssl_protocols
# TLSv1.2 TLSv1.3, sendfile on) over HTTPS and HTTP, serving the same
# files: a small .info and a 12 MiB zip, from warm caches. wrk (closed
# loop, keep-alive) is the client, so what matters is the server's CPU
# time per request and per GiB, read from /proc/PID/stat around each turn.
# Prints markdown for BENCHMARKS.md.
#
#   benches/tls-cost.sh [SECONDS_PER_TURN] [ROUNDS]
# Servers on CPU 1 (gomodproxy --cores 1), wrk on CPU 0 (2 threads).
# Needs: nginx, wrk, openssl, python3, curl, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/nginx-conf.sh
source benches/nginx-conf.sh
turn=${1:-5}; rounds=${2:-3}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
work=$(mktemp -d /tmp/gomodproxy-tls.XXXXXX)
chmod 755 "$work"
pids=()
trap nginx_bench_cleanup EXIT
ulimit -n 20000
for p in 18690 18691 18692 18693; do
    if curl -sk -o /dev/null "http://127.0.0.1:$p/" || curl -sk -o /dev/null "https://127.0.0.1:$p/"; then
        echo "something already listens on port $p" >&2; exit 1
    fi
done

python3 - "$work/tree" <<'PY'
import os, random, sys, zipfile
root = sys.argv[1]
path = "example.com/bench/tls"
d = os.path.join(root, path, "@v"); os.makedirs(d)
open(os.path.join(d, "v1.0.0.info"), "w").write('{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}')
open(os.path.join(d, "v1.0.0.mod"), "w").write(f"module {path}\n\ngo 1.21\n")
with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n\ngo 1.21\n")
    z.writestr(f"{path}@v1.0.0/data.bin", random.Random(1).randbytes((12 << 20) - 400))
PY
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
info=/example.com/bench/tls/@v/v1.0.0.info
zip=/example.com/bench/tls/@v/v1.0.0.zip

nginx_conf "$work" "    types { application/zip zip; application/json info; }
    server { listen 127.0.0.1:18692 reuseport; root $work/tree; }
    server {
        listen 127.0.0.1:18693 ssl reuseport;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $work/tree;
    }" >"$work/nginx.conf"
taskset -c 1 nginx -c "$work/nginx.conf"
taskset -c 1 "$bin" serve --listen 127.0.0.1:18690 --tls-listen 127.0.0.1:18691 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --admin-listen off --data "$work/data" --upstream "file://$work/tree" --sumdb off --cores 1 >"$work/out" 2>"$work/err" &
gmp=$!; pids+=("$gmp")
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18690/healthz && break; sleep 0.05; done
for p in "$info" "$zip"; do
    a=$(curl -sf "http://127.0.0.1:18690$p" | sha256sum); b=$(curl -skf "https://127.0.0.1:18691$p" | sha256sum)
    c=$(curl -sf "http://127.0.0.1:18692$p" | sha256sum); d=$(curl -skf "https://127.0.0.1:18693$p" | sha256sum)
    [[ "$a" == "$b" && "$a" == "$c" && "$a" == "$d" ]] || { echo "bytes differ for $p" >&2; exit 1; }
done
ngx=$(cat "$work/nginx.pid")
ngx_worker=$(pgrep -P "$ngx" | head -1)
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# turn PID URL CONNS → "requests bytes cpu_seconds"
turn() {
    local before after out
    before=$(cpu_ticks "$1")
    out=$(taskset -c 0 wrk -t2 -c"$3" -d"${turn}s" --latency "$2" 2>&1)
    after=$(cpu_ticks "$1")
    local reqs bytes
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    bytes=$(awk '/requests in/ {v=$5; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2); m=(u=="GB")?2^30:(u=="MB")?2^20:(u=="KB")?2^10:1; print n*m}' <<<"$out")
    echo "$reqs $bytes $(echo "($after - $before) / $hz" | bc -l)"
}
declare -A sum
for ((r = 0; r < rounds; r++)); do
    for target in "gmp-http $gmp http://127.0.0.1:18690" "gmp-https $gmp https://127.0.0.1:18691" \
                  "ngx-http $ngx_worker http://127.0.0.1:18692" "ngx-https $ngx_worker https://127.0.0.1:18693"; do
        read -r name pid base <<<"$target"
        for obj in "info $info 64" "zip $zip 16"; do
            read -r kind path conns <<<"$obj"
            sum["$name-$kind"]+="$(turn "$pid" "$base$path" "$conns");"
        done
    done
done
python3 - "$turn" "$rounds" "${sum[gmp-http-info]}" "${sum[gmp-https-info]}" "${sum[ngx-http-info]}" "${sum[ngx-https-info]}" \
    "${sum[gmp-http-zip]}" "${sum[gmp-https-zip]}" "${sum[ngx-http-zip]}" "${sum[ngx-https-zip]}" <<'PY'
import statistics, sys
turn, rounds = sys.argv[1], sys.argv[2]
def parse(s):
    return [tuple(float(x) for x in r.split()) for r in s.split(";") if r.strip()]
names = ["gomodproxy HTTP", "gomodproxy HTTPS", "nginx HTTP", "nginx HTTPS"]
info = [parse(s) for s in sys.argv[3:7]]
zips = [parse(s) for s in sys.argv[7:11]]
print(f"### What TLS costs ({rounds} rounds × {turn}s per turn, wrk -t2 on CPU 0, servers on CPU 1)\n")
print("| server | .info req/s | .info server CPU µs/request | 12 MiB zip GiB/s | zip server CPU ms/GiB |")
print("|---|---|---|---|---|")
for n, i, z in zip(names, info, zips):
    rps = statistics.median(r[0] / float(turn) for r in i)
    us = statistics.median(r[2] * 1e6 / r[0] for r in i)
    gibs = statistics.median(r[1] / float(turn) / 2**30 for r in z)
    ms = statistics.median(r[2] * 1e3 / (r[1] / 2**30) for r in z)
    print(f"| {n} | {rps:,.0f} | {us:.1f} | {gibs:.2f} | {ms:.0f} |")
PY
