#!/usr/bin/env bash
# tuning/test-preflight.sh: a smoke test of tuning/preflight, for CI.
#
# It assumes nothing about how well the host is tuned. It checks that
# preflight runs for both roles, prints exactly one well-formed line for
# every check of the role, and exits 1 exactly when it printed a FAIL line
# (0 otherwise). It also checks the forced-FAIL path, the --fix block, and
# usage errors. It needs no root. Exit 0 means every check of this test
# passed.

set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
preflight="$here/preflight"

server_checks="kernel io_uring memlock nofile-soft nofile-hard nr_open file-max somaxconn tcp_max_syn_backlog netdev_max_backlog port-range tcp_tw_reuse max_map_count conntrack memory thp cpus irqbalance numa"
loadgen_checks="kernel nofile-soft nofile-hard nr_open file-max port-range tcp_tw_reuse conntrack memory cpus irqbalance numa"

failures=0
fail() {
	printf 'not ok: %s\n' "$1"
	failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$1"; }

# Lines of a run up to the --fix block (the block holds bare commands).
report_part() { sed '/^# --fix:/,$d'; }

# check_run LABEL EXPECTED_NAMES OUTPUT RC
check_run() {
	local label="$1" names="$2" out="$3" rc="$4" body bad name n has_fail summary
	body="$(printf '%s\n' "$out" | report_part)"

	if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
		fail "$label: exit status $rc, want 0 or 1"
		printf '%s\n' "$out" | sed 's/^/    /'
		return
	fi

	# Every line is a note (#) or a check line of the documented shape.
	bad="$(printf '%s\n' "$body" | grep -Ev '^#' | grep -Ev '^(ok  |WARN|FAIL)  [a-z_-]+ +current: .* \| want: .* \| fix: .+$' || true)"
	if [ -n "$bad" ]; then
		fail "$label: malformed lines:"
		printf '%s\n' "$bad" | sed 's/^/    /'
	else
		pass "$label: every line is a note or a check line"
	fi

	# Exactly one line per expected check, and no others.
	local missing="" dup="" extra=""
	for name in $names; do
		n="$(printf '%s\n' "$body" | awk -v n="$name" '$1 ~ /^(ok|WARN|FAIL)$/ && $2 == n' | wc -l)"
		n="${n// /}"
		if [ "$n" = 0 ]; then missing="$missing $name"; elif [ "$n" != 1 ]; then dup="$dup $name"; fi
	done
	for name in $(printf '%s\n' "$body" | awk '$1 ~ /^(ok|WARN|FAIL)$/ {print $2}'); do
		case " $names " in *" $name "*) ;; *) extra="$extra $name" ;; esac
	done
	[ -z "$missing" ] || fail "$label: no line for:$missing"
	[ -z "$dup" ] || fail "$label: more than one line for:$dup"
	[ -z "$extra" ] || fail "$label: unexpected checks:$extra"
	local count=0
	for name in $names; do count=$((count + 1)); done
	[ -n "$missing$dup$extra" ] || pass "$label: one line for each of $count checks"

	# Exit status matches the presence of FAIL lines.
	has_fail=0
	printf '%s\n' "$body" | grep -q '^FAIL  ' && has_fail=1
	if [ "$has_fail" = "$rc" ]; then
		pass "$label: exit $rc matches FAIL lines present=$has_fail"
	else
		fail "$label: exit $rc but FAIL lines present=$has_fail"
	fi

	# The summary agrees with the lines.
	summary="$(printf '%s\n' "$body" | grep '^# summary:' || true)"
	local c_ok c_warn c_fail
	c_ok="$(printf '%s\n' "$body" | grep -c '^ok  ' || true)"
	c_warn="$(printf '%s\n' "$body" | grep -c '^WARN  ' || true)"
	c_fail="$(printf '%s\n' "$body" | grep -c '^FAIL  ' || true)"
	if [ "$summary" = "# summary: $c_ok ok, $c_warn WARN, $c_fail FAIL" ]; then
		pass "$label: summary matches ($c_ok ok, $c_warn WARN, $c_fail FAIL)"
	else
		fail "$label: summary '$summary' vs counted $c_ok/$c_warn/$c_fail"
	fi
}

run() {
	# run OUTVAR RCVAR ARGS...: captures stdout+stderr and the exit status.
	local __out __rc
	__out="$("$preflight" "${@:3}" 2>&1)"
	__rc=$?
	printf -v "$1" '%s' "$__out"
	printf -v "$2" '%s' "$__rc"
}

[ -x "$preflight" ] || { echo "not ok: $preflight is missing or not executable"; exit 1; }

# The two roles, with a modest target (the result may be ok or not: only
# the shape and the exit status are checked).
for role in server loadgen; do
	names="$server_checks"
	[ "$role" = loadgen ] && names="$loadgen_checks"
	run out rc --role "$role" --connections 1000
	check_run "--role $role" "$names" "$out" "$rc"
done

# A target no host can meet in one process: RLIMIT_NOFILE can never exceed fs.nr_open,
# whose maximum is below 2^30, so nofile-hard must FAIL and the exit is 1.
# --fix adds the command block.
for role in server loadgen; do
	names="$server_checks"
	[ "$role" = loadgen ] && names="$loadgen_checks"
	run out rc --role "$role" --connections 2000000000 --processes 1 --fix
	check_run "--role $role (forced FAIL, --fix)" "$names" "$out" "$rc"
	if [ "$rc" = 1 ] && printf '%s\n' "$out" | grep -q '^FAIL  nofile-hard '; then
		pass "--role $role (forced FAIL): nofile-hard FAILs and the exit status is 1"
	else
		fail "--role $role (forced FAIL): expected FAIL nofile-hard and exit 1, got exit $rc"
	fi
	if printf '%s\n' "$out" | grep -q '^# --fix: '; then
		pass "--role $role --fix: prints the --fix block"
	else
		fail "--role $role --fix: no '# --fix:' block"
	fi
done

# Usage errors exit 2 and print no check lines.
for args in "--role nonsense" "--connections many" "--no-such-flag"; do
	# shellcheck disable=SC2086 # word splitting of $args is intended
	run out rc $args
	if [ "$rc" = 2 ] && ! printf '%s\n' "$out" | grep -Eq '^(ok|WARN|FAIL)  '; then
		pass "usage error ($args) exits 2"
	else
		fail "usage error ($args): exit $rc"
	fi
done

# Lint with ShellCheck when it is installed (CI images may lack it; not required).
if command -v shellcheck >/dev/null 2>&1; then
	if shellcheck "$preflight" "$here/test-preflight.sh"; then
		pass "shellcheck preflight test-preflight.sh"
	else
		fail "shellcheck reported problems"
	fi
else
	printf 'skip: shellcheck not installed\n'
fi

if [ "$failures" -eq 0 ]; then
	printf 'PASS: test-preflight.sh\n'
	exit 0
fi
printf 'FAIL: test-preflight.sh (%d failed)\n' "$failures"
exit 1
