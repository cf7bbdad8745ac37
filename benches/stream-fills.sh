#!/usr/bin/env bash
# Serve-while-filling: what the requesters of one cold 40 MiB zip wait,
# streamed (the default, --stream-fills 1MiB) against buffered
# (--stream-fills off), from an upstream that sends at a fixed rate.
# Prints markdown for BENCHMARKS.md.
#
# Each round starts gomodproxy (--cores 1, pinned to CPU 1) on an empty
# data directory, then CLIENTS curl clients (pinned to CPU 0) ask for the
# zip at once; the upstream (python, CPU 0) paces its body at RATE MiB/s.
# Reported: medians over ROUNDS of the clients' time to first body byte
# and to the last byte, and the server's CPU time for the fill.
#
#   benches/stream-fills.sh [CLIENTS] [RATE_MIB_S] [ROUNDS]
# Needs: python3, curl, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-16}; rate=${2:-100}; rounds=${3:-3}
bin=./target/release/gomodproxy
work=$(mktemp -d /tmp/gomodproxy-stream.XXXXXX)
up_pid=; gmp_pid=
cleanup() { kill "$up_pid" "$gmp_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work/tree" <<'PY'
import os, sys, zipfile, random
root = sys.argv[1]
path = "example.com/bench/fortymib"
d = os.path.join(root, path, "@v"); os.makedirs(d)
with zipfile.ZipFile(os.path.join(d, "v1.0.0.zip"), "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{path}@v1.0.0/go.mod", f"module {path}\n")
    z.writestr(f"{path}@v1.0.0/data.bin", random.Random(1).randbytes((40 << 20) - 300))
PY

# A paced upstream: 64 KiB pieces, each at its due time for RATE MiB/s.
cat > "$work/upstream.py" <<'PY'
import http.server, os, sys, time
root, rate = sys.argv[1], float(sys.argv[2]) * (1 << 20)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        p = os.path.join(root, self.path.lstrip("/"))
        if ".." in self.path or not os.path.isfile(p):
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        data = open(p, "rb").read()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        start = time.monotonic()
        for off in range(0, len(data), 65536):
            due = start + off / rate
            if due > time.monotonic(): time.sleep(due - time.monotonic())
            self.wfile.write(data[off:off + 65536])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
taskset -c 0 python3 "$work/upstream.py" "$work/tree" "$rate" > "$work/up.port" &
up_pid=$!
for _ in $(seq 50); do [ -s "$work/up.port" ] && break; sleep 0.1; done
upstream="http://127.0.0.1:$(cat "$work/up.port")"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/example.com/bench/fortymib/@v/v1.0.0.zip"
size=$(stat -c %s "$work/tree/example.com/bench/fortymib/@v/v1.0.0.zip")

cpu_ms() { awk '{ print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "| mode | first byte, median client (ms) | last byte, median client (ms) | last byte, slowest client (ms) | server CPU (ms) |"
echo "|---|---|---|---|---|"
for mode in 1MiB off; do
  : > "$work/rounds"
  for _ in $(seq "$rounds"); do
    rm -rf "$work/data"
    taskset -c 1 "$bin" serve --listen "127.0.0.1:$port" --admin-listen off --data "$work/data" --cores 1 \
      --upstream "$upstream" --sumdb off --stream-fills "$mode" > "$work/server.log" 2>&1 &
    gmp_pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.05; done
    before=$(cpu_ms "$gmp_pid")
    for i in $(seq "$clients"); do
      taskset -c 0 curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' "$url" > "$work/c$i" &
    done
    # shellcheck disable=SC2046 # one PID per word
    wait $(jobs -p | grep -vx "$up_pid" | grep -vx "$gmp_pid")
    after=$(cpu_ms "$gmp_pid")
    short=$(cat "$work"/c* | awk -v want="$size" '$3 != want' | wc -l)
    [ "$short" = 0 ] || { echo "$short clients got a short body" >&2; exit 1; }
    cat "$work"/c* | awk -v cpu="$(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" '
      { print $1 * 1000, $2 * 1000, cpu }' > "$work/clients"
    kill "$gmp_pid"; wait "$gmp_pid" 2>/dev/null || true; gmp_pid=
    first=$(cut -d' ' -f1 "$work/clients" | median)
    last=$(cut -d' ' -f2 "$work/clients" | median)
    slowest=$(cut -d' ' -f2 "$work/clients" | sort -g | tail -1)
    cpu=$(cut -d' ' -f3 "$work/clients" | head -1)
    echo "$first $last $slowest $cpu" >> "$work/rounds"
    rm -f "$work"/c*
  done
  printf '| %s | %.0f | %.0f | %.0f | %.0f |\n' "$([ "$mode" = off ] && echo buffered || echo "streamed ($mode)")" \
    "$(cut -d' ' -f1 "$work/rounds" | median)" "$(cut -d' ' -f2 "$work/rounds" | median)" \
    "$(cut -d' ' -f3 "$work/rounds" | median)" "$(cut -d' ' -f4 "$work/rounds" | median)"
done
echo
echo "($clients clients at once, upstream paced at $rate MiB/s, median of $rounds rounds)"
