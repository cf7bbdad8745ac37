#!/usr/bin/env bash
# Dependency-graph prefetch, on against off, through the same gomodproxy
# build, alternating runs, median of ROUNDS: a cold `go mod download all`
# (fresh store, fresh module cache each run), its wall time, and what the
# upstream was asked (the requests prefetch added are the ones nobody
# asked for: with prefetch off the upstream sees exactly what the go
# command needed).
#
# Default: a generated graph (DEPTH levels of WIDTH modules, each requiring
# 3 of the next level at v1.0.0 or v1.1.0; their go.mods say go
# GO_DIRECTIVE, 1.16 by default, so the go command loads every go.mod of
# the graph; 1.21 prunes it) served by a local upstream that answers after
# DELAY_MS (a distant upstream's round trip).
#
# REAL=1 (MARKED: the real upstream that `go env GOPROXY` names, or
# $UPSTREAM, a few hundred requests per run, as one developer's
# `go mod download` would): `go get` of gin, viper and client_golang, then
# `go mod download all`. Not run by CI.
#
#   [REAL=1] [DELAY_MS=20] [DEPTH=6] [WIDTH=24] [GO_DIRECTIVE=1.16] [AUDIT=prefix] benches/prefetch.sh [ROUNDS]
# AUDIT: each run writes its audit log to prefix.on / prefix.off (appended).
# gomodproxy --cores 1 on CPU 1. Needs: go, curl, python3, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
delay=${DELAY_MS:-20}; depth=${DEPTH:-6}; width=${WIDTH:-24}; godirective=${GO_DIRECTIVE:-1.16}
work=$(mktemp -d /tmp/gomodproxy-prefetch.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port=18711; admin=18712; upport=18713
for p in $port $admin $upport; do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then echo "something already listens on 127.0.0.1:$p" >&2; exit 1; fi
done

if [[ -n ${REAL:-} ]]; then
    upstream=${UPSTREAM:-$(go env GOPROXY | tr ',|' '\n' | grep -m1 -E '^https?://' || true)}
    [[ -n $upstream ]] || { echo "no http(s) upstream in go env GOPROXY (set UPSTREAM)" >&2; exit 1; }
    sumdb=$(go env GOSUMDB)
    what="\`go get\` of gin, viper and client_golang, then \`go mod download all\`, through the real upstream"
else
    sumdb=off
    python3 - "$work/tree" "$depth" "$width" "$godirective" <<'PY'
import io, json, os, sys, zipfile
root, depth, width, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def name(level, i): return f"example.com/pf/l{level}/m{i}"
def write(path, version, requires):
    d = os.path.join(root, path, "@v"); os.makedirs(d, exist_ok=True)
    gomod = f"module {path}\n\ngo {go}\n"
    if requires:
        gomod += "\nrequire (\n" + "".join(f"\t{p} {v}\n" for p, v in requires) + ")\n"
    open(os.path.join(d, f"{version}.mod"), "w").write(gomod)
    open(os.path.join(d, f"{version}.info"), "w").write(json.dumps({"Version": version, "Time": "2024-01-01T00:00:00Z"}))
    pkg = path.rsplit("/", 1)[1]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{path}@{version}/go.mod", gomod)
        z.writestr(f"{path}@{version}/{pkg}.go", f"package {pkg}\n\n// ID names this package.\nfunc ID() string {{ return \"{path}\" }}\n")
    open(os.path.join(d, f"{version}.zip"), "wb").write(buf.getvalue())
    with open(os.path.join(d, "list"), "a") as f: f.write(version + "\n")
for level in range(depth):
    for i in range(width):
        req = [] if level == depth - 1 else [(name(level + 1, (i + 7 * j) % width), "v1.0.0" if j == 0 else "v1.1.0") for j in range(3)]
        for v in ("v1.0.0", "v1.1.0"):
            write(name(level, i), v, req)
write("example.com/pf/root", "v1.0.0", [(name(0, i), "v1.1.0") for i in range(width)])
PY
    # The upstream: the tree, each answer after DELAY_MS, counting requests.
    python3 - "$work/tree" "$upport" "$delay" >"$work/upstream.log" 2>&1 <<'PY' &
import http.server, os, sys, threading, time
root, port, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000
counts, lock = {}, threading.Lock()
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/__counts":
            with lock: body = "".join(f"{k} {v}\n" for k, v in sorted(counts.items())).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body); return
        if self.path == "/__reset":
            with lock: counts.clear()
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers(); return
        kind = os.path.splitext(self.path)[1] or "other"
        with lock: counts[kind] = counts.get(kind, 0) + 1
        time.sleep(delay)
        super().do_GET()
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
    pids+=($!)
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$upport/__counts" && break; sleep 0.05; done
    upstream="http://127.0.0.1:$upport"
    what="\`go mod download all\` of a generated graph ($((2 * depth * width + 1)) module versions, $depth levels, go $godirective), upstream answering after $delay ms"
fi

proxy=
start_proxy() { # on|off; a fresh store each time
    rm -rf "$work/data"
    GOSUMDB="$sumdb" taskset -c 1 "$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --data "$work/data" \
        --cores 1 --upstream "$upstream" --prefetch "$1" ${AUDIT:+--audit-log "$AUDIT.$1"} >"$work/proxy.out" 2>"$work/proxy.err" &
    proxy=$!
    for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.05; done
    echo "gomodproxy did not start: $(tail -3 "$work/proxy.err")" >&2
    exit 1
}
stop_proxy() { kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true; proxy=; }
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="gomodproxy_$1" '$1 == m { print $2 }'; }

cold() { # → milliseconds of one cold run through the proxy
    local env=$work/env
    chmod -R u+w "$env" 2>/dev/null || true
    rm -rf "$env"
    mkdir -p "$env/app"
    local t0 cmd
    if [[ -n ${REAL:-} ]]; then
        printf 'module bench.example/app\n\ngo 1.22\n' >"$env/app/go.mod"
        cmd="go get github.com/gin-gonic/gin@v1.10.0 github.com/spf13/viper@v1.19.0 github.com/prometheus/client_golang@v1.22.0 && go mod download all"
    else
        printf 'module bench.example/app\n\ngo 1.21\n\nrequire example.com/pf/root v1.0.0\n' >"$env/app/go.mod"
        cmd="go mod download all"
    fi
    t0=$(date +%s%N)
    (cd "$env/app" && env GOPATH="$env/gopath" GOMODCACHE="$env/modcache" GOCACHE="$env/gocache" GOPROXY="http://127.0.0.1:$port" \
        GOSUMDB="$sumdb" GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local GONOSUMDB= GOPRIVATE= GONOPROXY= \
        sh -c "$cmd" >"$work/go.out" 2>&1) || { cat "$work/go.out" >&2; exit 1; }
    echo $((($(date +%s%N) - t0) / 1000000))
}

: >"$work/runs"
for _ in $(seq "$rounds"); do
    for mode in off on; do
        [[ -z ${REAL:-} ]] && curl -s -o /dev/null "$upstream/__reset"
        start_proxy "$mode"
        ms=$(cold)
        sleep 1 # prefetches still under way land, and are counted
        echo "$mode $ms $(metric upstream_fetches) $(metric prefetch_fetched)" >>"$work/runs"
        stop_proxy
    done
done

echo "### Prefetch: $what; $rounds alternating runs"
echo
python3 - "$work/runs" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, ms, fetches, prefetched = line.split()
    runs[mode].append((int(ms) / 1000, int(fetches), int(prefetched)))
m = statistics.median
print("| prefetch | runs (s) | median s | upstream requests (median) | of them prefetched | speed-up |")
print("|---|---|---:|---:|---:|---:|")
off = m(x[0] for x in runs["off"]); off_req = m(x[1] for x in runs["off"])
for mode in ("off", "on"):
    t = m(x[0] for x in runs[mode]); req = m(x[1] for x in runs[mode]); pre = m(x[2] for x in runs[mode])
    print(f"| {mode} | {', '.join(f'{x[0]:.2f}' for x in runs[mode])} | {t:.2f} | {req:.0f} | {pre:.0f} | {'**%.2f×**' % (off / t) if mode == 'on' else ''} |")
on_req = m(x[1] for x in runs["on"])
print()
print(f"Requests prefetch added that the go command never asked for: {on_req - off_req:.0f} of {on_req:.0f} "
      f"(**{100 * (on_req - off_req) / on_req:.0f}%** of the upstream's total).")
PY
