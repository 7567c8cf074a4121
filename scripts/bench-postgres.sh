#!/usr/bin/env bash
# pgbench select-only through four paths, in one run: straight to PostgreSQL,
# through the Deadbolt Postgres sidecar, through pgbouncer (session mode), and
# through HAProxy in TCP mode (a relay that reads nothing, the client's TLS
# going through to PostgreSQL: the cost of the extra hop alone). Every path
# uses TLS from the client, as production would. Both proxies log
# in to PostgreSQL over loopback the same way: without TLS by default, as an
# injected sidecar next to its database does, or both with TLS (verified
# against the bench CA) with UPSTREAM_TLS=on. Prints TPS per
# client count and the ratios, and the CPU each path spent per transaction
# (the proxy's, and PostgreSQL's own), read from /proc: a busy machine shows
# up as lower TPS at the same CPU per transaction, not as a regression.
# Stops every process it started, pgbouncer included. Installs haproxy with
# apt-get when missing.
#
#   ./scripts/bench-postgres.sh            # 1, 16 and 64 clients, 3 rounds of 5 s each
#   CLIENTS="1 16" SECONDS_PER_RUN=10 ROUNDS=5 ./scripts/bench-postgres.sh
#   UPSTREAM_TLS=on ./scripts/bench-postgres.sh   # both proxies use TLS to PostgreSQL too
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
clients=${CLIENTS:-"1 16 64"}
duration=${SECONDS_PER_RUN:-5}
threads=$(nproc)
upstream_tls=${UPSTREAM_TLS:-off}
case $upstream_tls in
  off|on) ;;
  *) echo "UPSTREAM_TLS must be off or on, not ${upstream_tls}" >&2; exit 2 ;;
esac

# shellcheck source=scripts/bench-db-lib.sh
. "$repo/scripts/bench-db-lib.sh"
command -v haproxy >/dev/null 2>&1 || install_debs haproxy

(cd "$repo" && cargo build -q --release -p deadbolt-operator -p deadbolt-sidecar --bins)
bin=$repo/target/release
pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$pgbouncer" ] || { echo "pgbouncer is not installed: run scripts/install-tools.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/deadbolt-bench.XXXXXX)
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  # pgbouncer runs under runuser: stop the daemon itself, by its pid file.
  if [ -s "$work/pgbouncer.pid" ]; then kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Certificates: one Deadbolt CA signs the server certificates of every path and the client's.
bench_pki bench-postgres

pg_port=$(free_port); proxy_port=$(free_port); bouncer_port=$(free_port); relay_port=$(free_port)
echo postgres-secret > "$work/pgpass"
cp "$work/server.crt" "$work/pg-server.crt"; cp "$work/server.key" "$work/pg-server.key"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
as_pg "$pg_bin/initdb" -D "$work/pg" -U postgres --pwfile="$work/pgpass" --auth-local=trust \
  --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o "-p $pg_port -k $work \
  -c listen_addresses=127.0.0.1 -c max_connections=250 -c ssl=on \
  -c ssl_cert_file=$work/pg-server.crt -c ssl_key_file=$work/pg-server.key" start >/dev/null
psql "host=127.0.0.1 port=$pg_port user=postgres password=postgres-secret dbname=postgres" -XAtq \
  -c "CREATE ROLE app LOGIN PASSWORD 'app-secret'" -c "CREATE DATABASE app OWNER app"
PGPASSWORD=app-secret "$pg_bin/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$pg_port" -U app app >/dev/null 2>&1

# The proxies' leg to PostgreSQL: the same for both.
if [ "$upstream_tls" = on ]; then
  start_deadbolt postgres bench-postgres "127.0.0.1:$pg_port" --upstream-ca "$work/ca/ca.crt"
  bouncer_server_tls="server_tls_sslmode = verify-full
server_tls_ca_file = $work/ca/ca.crt"
else
  start_deadbolt postgres bench-postgres "127.0.0.1:$pg_port"
  bouncer_server_tls="server_tls_sslmode = disable"
fi

cat > "$work/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=$pg_port dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 100
client_tls_sslmode = require
client_tls_cert_file = $work/server.crt
client_tls_key_file = $work/server.key
$bouncer_server_tls
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
echo '"app" "app-secret"' > "$work/userlist.txt"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
as_pg "$pgbouncer" -q "$work/pgbouncer.ini" &
pids+=($!)
wait_for env PGPASSWORD=app-secret psql "host=127.0.0.1 port=$bouncer_port user=app dbname=app sslmode=require" -XAtc "select 1"
wait_for test -s "$work/pgbouncer.pid"
start_relay "127.0.0.1:$pg_port"
postmaster=$(head -n 1 "$work/pg/postmaster.pid")
bouncer_pid=$(cat "$work/pgbouncer.pid")
hz=$(getconf CLK_TCK)

# PostgreSQL's: the postmaster, the backends it reaped (pgbench's, on
# disconnect) and those still running (pgbouncer keeps its own open).
pg_ticks() {
  local total child
  total=$(ticks "$postmaster")
  for child in $(pgrep -P "$postmaster"); do total=$((total + $(ticks "$child"))); done
  echo "$total"
}

run() { # run NAME CLIENTS -> "tps proxy_us_per_txn postgres_us_per_txn"
  local name=$1 n=$2 j=$(( $2 < threads ? $2 : threads )) out proxy_pid=""
  case $name in
    deadbolt) proxy_pid=$sidecar_pid ;;
    pgbouncer) proxy_pid=$bouncer_pid ;;
    relay) proxy_pid=$relay_pid ;;
  esac
  local pg_before proxy_before=0 pg_after proxy_after=0
  pg_before=$(pg_ticks); [ -n "$proxy_pid" ] && proxy_before=$(ticks "$proxy_pid")
  case $name in
    direct)   out=$(PGSSLMODE=require PGPASSWORD=app-secret "$pg_bin/pgbench" -n -S -c "$n" -j "$j" -T "$duration" -h 127.0.0.1 -p "$pg_port" -U app app 2>&1) ;;
    deadbolt) out=$(PGSSLMODE=verify-full PGSSLROOTCERT="$work/ca/ca.crt" PGSSLCERT="$work/client.crt" PGSSLKEY="$work/client.key" \
                    "$pg_bin/pgbench" -n -S -c "$n" -j "$j" -T "$duration" -h localhost -p "$proxy_port" -U app app 2>&1) ;;
    pgbouncer) out=$(PGSSLMODE=require PGPASSWORD=app-secret "$pg_bin/pgbench" -n -S -c "$n" -j "$j" -T "$duration" -h 127.0.0.1 -p "$bouncer_port" -U app app 2>&1) ;;
    relay)    out=$(PGSSLMODE=require PGPASSWORD=app-secret "$pg_bin/pgbench" -n -S -c "$n" -j "$j" -T "$duration" -h 127.0.0.1 -p "$relay_port" -U app app 2>&1) ;;
  esac
  sleep 0.5 # the backends exit and are reaped
  pg_after=$(pg_ticks); [ -n "$proxy_pid" ] && proxy_after=$(ticks "$proxy_pid")
  local tps txns
  tps=$(grep -oP 'tps = \K[0-9.]+(?= \(without initial connection time\))' <<<"$out") || { echo "$out" >&2; exit 1; }
  txns=$(grep -oP 'number of transactions actually processed: \K[0-9]+' <<<"$out")
  awk -v tps="$tps" -v t="$txns" -v hz="$hz" -v p=$((proxy_after - proxy_before)) -v g=$((pg_after - pg_before)) \
    'BEGIN { printf "%s %.1f %.1f\n", tps, 1e6 * p / hz / t, 1e6 * g / hz / t }'
}

echo "pgbench -S (select-only), $rounds rounds of ${duration}s per path, -j $threads, TLS from every client," \
  "proxies' TLS to PostgreSQL $upstream_tls, $(nproc) cores"
echo "Medians over the rounds; ratios: median (range) of the rounds' ratios."
echo "relay: HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }') in TCP mode, a thread per core (TLS through to PostgreSQL)"
echo "CPU per transaction in microseconds: each proxy's (deadbolt-sidecar, pgbouncer, haproxy) and PostgreSQL's"
printf '%8s %10s %10s %10s %10s %9s %9s %9s %24s %24s %24s\n' clients direct deadbolt pgbouncer relay \
  "proxy-cpu" "pgb-cpu" "relay-cpu" "deadbolt/direct" "deadbolt/pgbouncer" "relay/direct"
for n in $clients; do
  rounds_of "$n" direct deadbolt pgbouncer relay
  printf '%8d %10.0f %10.0f %10.0f %10.0f %7.1fus %7.1fus %7.1fus %24s %24s %24s\n' "$n" "$(median_of rate direct)" \
    "$(median_of rate deadbolt)" "$(median_of rate pgbouncer)" "$(median_of rate relay)" \
    "$(median_of cpu deadbolt)" "$(median_of cpu pgbouncer)" "$(median_of cpu relay)" \
    "$(versus deadbolt direct)" "$(versus deadbolt pgbouncer)" "$(versus relay direct)"
  echo "         PostgreSQL CPU per transaction: direct $(median_of server direct)us," \
    "via deadbolt $(median_of server deadbolt)us, via pgbouncer $(median_of server pgbouncer)us, via relay $(median_of server relay)us"
done
