#!/usr/bin/env bash
# What a cold `direct` fetch from a local Git repository costs: gomodproxy
# (fresh store, fresh mirror: the clone is included) answering `list` and a
# version's `.zip`, each from cold, against
# the go command's own `GOPROXY=direct` `go list -m -versions` and
# `go mod download` of the same version (fresh module cache), in the same run.
# Prints markdown for BENCHMARKS.md.
#
#   benches/git-cold.sh [FILES] [ROUNDS]
# FILES: source files in the module (4 KiB each, plus 20 tags of history).
# gomodproxy --cores 1 on CPU 1; curl and the go command on CPU 0.
# Needs: git, go, curl, python3, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-500}; rounds=${2:-5}
bin=$(realpath "${BIN:-./target/release/gomodproxy}")
work=$(mktemp -d /tmp/gomodproxy-gitbench.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
host=git.bench.example
repo="$work/repos/team/big"
mkdir -p "$repo"
export GIT_CONFIG_GLOBAL="$work/gitconfig"
printf '[url "file://%s/repos/"]\n\tinsteadOf = https://%s/\n[protocol "file"]\n\tallow = always\n[user]\n\tname = b\n\temail = b@example.com\n' "$work" "$host" >"$GIT_CONFIG_GLOBAL"
(
    cd "$repo" && git init -q -b main
    printf 'module %s/team/big\n\ngo 1.22\n' "$host" >go.mod
    python3 - "$files" <<'PY'
import os, random, sys
n = int(sys.argv[1])
for i in range(n):
    d = f"pkg{i % 20}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i}.go", "w") as f:
        f.write(f"package pkg{i % 20}\n\n// {random.Random(i).randbytes(2000).hex()}\n")
PY
    for t in $(seq 1 20); do
        echo "// $t" >>pkg0/f0.go
        git add -A && git commit -qm "$t" && git tag "v1.$t.0"
    done
)
version=v1.20.0; module="$host/team/big"
# The go command finds the repository from a go-import tag, served here as its HTTP proxy.
taskset -c 0 python3 - "$host" >/dev/null 2>&1 <<'PY' &
import http.server, sys
host = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        root = "/".join(self.path.split("://")[-1].split("?")[0].split("/")[:3])
        body = f'<meta name="go-import" content="{root} git https://{root}">'.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_CONNECT(self):
        self.send_response(403); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18400), H).serve_forever()
PY
pids+=($!)
printf 'upstream = "direct"\nsumdb = "off"\n[[git]]\npattern = "%s/*"\nremote = "https://%s/{repo}"\ndepth = 3\n' "$host" "$host" >"$work/config.toml"
now() { date +%s.%N; }
start_proxy() {
    rm -rf "$work/data"
    taskset -c 1 "$bin" serve --listen 127.0.0.1:18401 --admin-listen off --data "$work/data" --cores 1 --config "$work/config.toml" >"$work/out" 2>"$work/err" &
    proxy=$!
    for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
}
stop_proxy() { kill "$proxy"; wait "$proxy" 2>/dev/null || true; }
# Seconds a command takes, as a decimal.
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc; }
goenv=(env GOPATH="$work/gopath" GOMODCACHE="$work/gopath/pkg/mod" GOCACHE="$work/gocache" GOPROXY=direct GOPRIVATE="$host"
    GOINSECURE="$host" HTTP_PROXY=http://127.0.0.1:18400 HTTPS_PROXY=http://127.0.0.1:18400 GOFLAGS=-modcacherw GOTOOLCHAIN=local GOENV=off)
proxy_list=(); proxy_zip=(); go_list=(); go_zip=()
cd "$work"
for ((r = 0; r < rounds; r++)); do
    # Every measurement starts cold: a fresh store and mirror, a fresh module cache.
    start_proxy; proxy_list+=("$(timed taskset -c 0 curl -sf "http://127.0.0.1:18401/$module/@v/list")"); stop_proxy
    start_proxy; proxy_zip+=("$(timed taskset -c 0 curl -sf "http://127.0.0.1:18401/$module/@v/$version.zip")"); stop_proxy
    rm -rf "$work/gopath"; go_list+=("$(timed taskset -c 0 "${goenv[@]}" go list -m -versions "$module")")
    rm -rf "$work/gopath"; go_zip+=("$(timed taskset -c 0 "${goenv[@]}" go mod download "$module@$version")")
done
rm -rf "$work/gopath"
python3 - "$files" "$rounds" "${proxy_list[*]}" "${proxy_zip[*]}" "${go_list[*]}" "${go_zip[*]}" <<'PY'
import statistics, sys
files, rounds = sys.argv[1], sys.argv[2]
pl, pz, gl, gz = ([float(x) * 1000 for x in a.split()] for a in sys.argv[3:7])
m = statistics.median
print(f"### Cold `direct` from a local Git repository ({files} files, 20 tags; median of {rounds} rounds)")
print()
print("| | gomodproxy (fresh store and mirror) | go command (`GOPROXY=direct`, fresh cache) | ratio |")
print("|---|---|---|---|")
print(f"| version list | {m(pl):.0f} ms (`/@v/list`) | {m(gl):.0f} ms (`go list -m -versions`) | **{m(pl)/m(gl):.2f}** |")
print(f"| zip of one version | {m(pz):.0f} ms (`/@v/V.zip`) | {m(gz):.0f} ms (`go mod download`) | **{m(pz)/m(gz):.2f}** |")
PY
