# shellcheck shell=bash
# Sourced by the bench scripts: the nginx every comparison runs against.
#
#   nginx_conf WORK HTTP_LINES > "$WORK/nginx.conf"
# One worker, no access log, sendfile and tcp_nopush, keep-alive without a
# request limit; its pid and error log under WORK. HTTP_LINES (types,
# servers, anything a bench adds) go inside the http block.
nginx_conf() {
    cat <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $1/nginx.pid;
error_log $1/nginx-error.log;
events { worker_connections 19000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
$2
}
NGINX
}

# The EXIT trap of a bench that runs nginx: stops the caller's servers (its
# `pids` array) and the nginx configured in its `work` directory, then
# removes that directory.
# shellcheck disable=SC2154  # pids and work are the sourcing script's
nginx_bench_cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
