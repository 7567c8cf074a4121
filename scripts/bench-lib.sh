# shellcheck shell=bash disable=SC2154,SC2034
# (start_relay uses and sets variables of the sourcing script)
# What every bench script shares (bench-postgres.sh and bench-mysql.sh through
# bench-db-lib.sh, and bench-kube-api.sh): one bench at a time, installing
# Debian's packages, free ports, waiting, CPU ticks from /proc, the TCP relay
# that prices a hop alone, and measuring in rounds. Each case is measured
# ROUNDS times (default 3), the paths taking turns within a round, so a slow
# spell of a shared machine lands on every path alike; the tables print each
# path's median and the median (and range) of the ratios of paths measured in
# the same round.

# One bench at a time, on the machine: two at once would share its cores and
# measure each other, and could pick the same free port. The script runs
# again under flock(1), which holds the lock until the script ends (-o: the
# script and the servers it starts never hold the lock file open, so a server
# left behind cannot keep the lock).
if [ -z "${DEADBOLT_BENCH_LOCKED:-}" ]; then
  export DEADBOLT_BENCH_LOCKED=1
  bench_lock=${TMPDIR:-/tmp}/deadbolt-bench.lock
  flock -n "$bench_lock" true || echo "==> another Deadbolt bench is running; waiting for it ($bench_lock)" >&2
  exec flock -o "$bench_lock" "$0" "$@"
fi

# shellcheck source=scripts/debs.sh
. "$repo/scripts/debs.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_until() { local deadline=$((SECONDS + 60)); until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.2; done; }
wait_for() { wait_until "$@" || { echo "timed out: $*" >&2; exit 1; }; }

# CPU ticks of a process (all its threads) and of its reaped children.
ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# start_relay UPSTREAM: HAProxy (Debian's package) in TCP mode on $relay_port
# in front of UPSTREAM, a thread per core; sets relay_pid. It relays bytes and
# reads none of them: the client's TLS goes through to the server as on the
# direct path. The cheapest hop there is, so its ratio to direct is what the
# extra hop alone costs on this machine, before any proxy's TLS and checks.
# Expects $work and the array pids.
start_relay() {
  cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend bench
  bind 127.0.0.1:$relay_port
  default_backend database
backend database
  server database $1
CFG
  haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  relay_pid=$!
  wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$relay_port"
}

# Rounds, medians and same-round ratios.
rounds=${ROUNDS:-3}
case $rounds in
  '' | *[!0-9]* | 0) echo "ROUNDS must be a positive number, not ${rounds}" >&2; exit 2 ;;
esac

# median V...: the middle value (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratios A B: the per-round ratios A[i]/B[i] of two space-separated lists,
# times SCALE (default 100: percentages).
ratios() { awk -v a="$1" -v b="$2" -v scale="${3:-100}" 'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%.2f\n", scale * x[i] / y[i] }'; }

# spread FORMAT V...: "median (min–max)" of the values, each printed with FORMAT.
spread() {
  local format=$1 sorted; shift
  sorted=$(printf '%s\n' "$@" | sort -g)
  # shellcheck disable=SC2059 # the format is the caller's
  printf "$format ($format–$format)" "$(median "$@")" "$(head -n 1 <<<"$sorted")" "$(tail -n 1 <<<"$sorted")"
}
