#!/usr/bin/env bash
# MARKED: uses the real upstream that `go env GOPROXY` names (its first
# http(s) entry, or $UPSTREAM), a few hundred requests per run, as one
# developer's `go mod download` would; never point it at anything you do
# not mean to ask. Not run by CI.
#
# A cold dependency graph, straight from the upstream against through a
# fresh gomodproxy (empty store) in front of it, alternating runs, median of
# ROUNDS (the network is noisy): `go get` of a few popular modules, then
# `go mod download all`, with fresh module and build caches each time; then
# a cold replay of the distinct `.info` URLs that graph needs at 4, 16 and
# 64 concurrent keep-alive clients, against the upstream and against a
# fresh gomodproxy, with the slowest request of each.
# Prints markdown for BENCHMARKS.md.
#
#   benches/cold-graph.sh [ROUNDS]
#   PROXY_ARGS="--module-fetch-concurrency 16" benches/cold-graph.sh [ROUNDS]
# Needs: go, curl, python3, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
upstream=${UPSTREAM:-$(go env GOPROXY | tr ',|' '\n' | grep -m1 -E '^https?://' || true)}
[[ -n $upstream ]] || { echo "no http(s) upstream in go env GOPROXY (set UPSTREAM)" >&2; exit 1; }
sumdb=$(go env GOSUMDB)
work=$(mktemp -d /tmp/gomodproxy-coldgraph.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=18701
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then echo "something already listens on 127.0.0.1:$port" >&2; exit 1; fi
mods=(github.com/gin-gonic/gin@v1.10.0 github.com/spf13/viper@v1.19.0 github.com/prometheus/client_golang@v1.22.0)

read -ra proxy_args <<<"${PROXY_ARGS:-}"
start_proxy() { # a fresh store each time
    rm -rf "$work/data"
    GOSUMDB="$sumdb" "$bin" serve --listen "127.0.0.1:$port" --admin-listen off --data "$work/data" --cores 1 \
        --upstream "$upstream" "${proxy_args[@]}" >"$work/proxy.out" 2>"$work/proxy.err" &
    pid=$!
    for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.05; done
    echo "gomodproxy did not start: $(tail -3 "$work/proxy.err")" >&2
    exit 1
}
stop_proxy() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

graph() { # GOPROXY → milliseconds for the whole graph, cold
    local env=$work/env
    chmod -R u+w "$env" 2>/dev/null || true
    rm -rf "$env"
    mkdir -p "$env/app"
    printf 'module bench.example/app\n\ngo 1.22\n' >"$env/app/go.mod"
    local t0
    t0=$(date +%s%N)
    (cd "$env/app" && env GOPATH="$env/gopath" GOMODCACHE="$env/modcache" GOCACHE="$env/gocache" GOPROXY="$1" \
        GOSUMDB="$sumdb" GOFLAGS=-mod=mod GOTOOLCHAIN=local GONOSUMDB= GOPRIVATE= GONOPROXY= \
        sh -c "go get ${mods[*]} >/dev/null 2>&1 && go mod download all >/dev/null 2>&1") || { echo "go failed against $1" >&2; exit 1; }
    echo $((($(date +%s%N) - t0) / 1000000))
}

: >"$work/graph"
for r in $(seq "$rounds"); do
    echo "upstream $(graph "$upstream")" >>"$work/graph"
    # Keep the first direct run's cache: its .info files name the replay's URLs.
    [[ $r == 1 ]] && cp -r "$work/env/modcache/cache/download" "$work/download"
    start_proxy
    echo "gomodproxy $(graph "http://127.0.0.1:$port")" >>"$work/graph"
    stop_proxy
done
requests=$(grep -c . <<<"$(find "$work/download" -name '*.info' -o -name '*.mod' -o -name '*.zip' -o -name list)")

(cd "$work/download" && find . -name '*.info' | sed 's|^\./||') >"$work/info-paths"
replay() { # BASE CONNS → "seconds max_ms retries"
    sed "s|^|$1/|" "$work/info-paths" >"$work/urls"
    python3 - "$work/urls" "$2" <<'PY'
import concurrent.futures, http.client, sys, time, urllib.parse
urls = [u.strip() for u in open(sys.argv[1]) if u.strip()]
conns = int(sys.argv[2])
def worker(chunk):
    # A request whose connection fails (this machine's resolver now and
    # then loses a query) is retried on a new one, up to 3 times; the wait
    # counts in its time, and the retries are reported.
    slowest, conn, retries = 0.0, None, 0
    for u in chunk:
        p = urllib.parse.urlsplit(u)
        t = time.perf_counter()
        for attempt in range(4):
            try:
                if conn is None:
                    cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
                    conn = cls(p.netloc, timeout=60)
                conn.request("GET", p.path); r = conn.getresponse(); r.read()
                break
            except OSError:
                conn = None
                if attempt == 3: raise
                retries += 1
                time.sleep(0.1)
        if r.status != 200: raise SystemExit(f"{u}: {r.status}")
        slowest = max(slowest, time.perf_counter() - t)
    return slowest, retries
chunks = [urls[i::conns] for i in range(conns)]
t = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(conns) as ex:
    done = list(ex.map(worker, chunks))
print(f"{time.perf_counter() - t:.2f} {max(d[0] for d in done) * 1000:.0f} {sum(d[1] for d in done)}")
PY
}
: >"$work/replay"
for c in 4 16 64; do
    for r in $(seq "$rounds"); do
        echo "$c upstream $(replay "$upstream" "$c")" >>"$work/replay"
        start_proxy
        echo "$c gomodproxy $(replay "http://127.0.0.1:$port" "$c")" >>"$work/replay"
        stop_proxy
    done
done

echo "### Cold dependency graph: \`go get\` of gin, viper and client_golang, then \`go mod download all\` ($requests files; $rounds alternating runs)"
echo
python3 - "$work/graph" "$work/replay" "$(wc -l <"$work/info-paths")" <<'PY'
import collections, statistics, sys
g = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, ms = line.split(); g[who].append(float(ms) / 1000)
up, gp = statistics.median(g["upstream"]), statistics.median(g["gomodproxy"])
print("| through | runs (s) | median s | vs upstream |")
print("|---|---|---:|---:|")
print(f"| upstream directly | {', '.join(f'{x:.1f}' for x in g['upstream'])} | {up:.1f} | 1.00 |")
print(f"| gomodproxy (empty store) | {', '.join(f'{x:.1f}' for x in g['gomodproxy'])} | {gp:.1f} | **{gp / up:.2f}** |")
print()
print(f"### Cold replay of the graph's {sys.argv[3]} distinct `.info` URLs (keep-alive clients; median of the runs, and the slowest request of any run)")
print()
print("| clients | upstream s | gomodproxy s | ratio | slowest request: upstream / gomodproxy | retried connections: upstream / gomodproxy |")
print("|---:|---:|---:|---:|---|---|")
r = collections.defaultdict(list)
for line in open(sys.argv[2]):
    c, who, s, ms, retries = line.split(); r[(int(c), who)].append((float(s), float(ms), int(retries)))
for c in sorted({k[0] for k in r}):
    u = statistics.median(x[0] for x in r[(c, "upstream")]); p = statistics.median(x[0] for x in r[(c, "gomodproxy")])
    um = max(x[1] for x in r[(c, "upstream")]); pm = max(x[1] for x in r[(c, "gomodproxy")])
    ur = sum(x[2] for x in r[(c, "upstream")]); pr = sum(x[2] for x in r[(c, "gomodproxy")])
    print(f"| {c} | {u:.2f} | {p:.2f} | **{p / u:.2f}** | {um:.0f} ms / {pm:.0f} ms | {ur} / {pr} |")
PY
