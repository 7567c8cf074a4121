#!/usr/bin/env bash
# sysbench oltp_point_select through three paths, in one run: straight to
# MariaDB, through the Deadbolt MySQL sidecar, and through HAProxy in TCP mode
# (a relay that reads nothing: the cost of the extra hop alone). A private
# MariaDB (Debian's mariadb-server) serves TLS with a certificate of a fresh
# Deadbolt CA; every client connection uses TLS, as production would (Deadbolt
# with a client certificate; the direct and relayed paths with the password,
# their TLS going through to MariaDB; the proxy logs in to MariaDB over
# loopback with an upstream password file, as the PostgreSQL bench does).
# Prints QPS per client count and the ratios, and the CPU each proxy and
# MariaDB spent per query, read from /proc: a busy machine shows up as lower
# QPS at the same CPU per query, not as a regression. Stops every process it
# started. Installs mariadb-server, sysbench and haproxy with apt-get when
# missing.
#
# Debian's sysbench (1.0.20) has no --mysql-ssl-cert/--mysql-ssl-key/
# --mysql-ssl-ca (newer sysbench has them): --mysql-ssl=on makes it load
# client-key.pem, client-cert.pem and cacert.pem from the current directory,
# so each path's sysbench runs in a directory holding its files (it verifies
# the server's chain against cacert.pem). The direct path presents the same
# Deadbolt client certificate (MariaDB trusts the CA and logs in by password);
# the proxy authenticates by it. That the direct runs used TLS is checked with
# MariaDB's Ssl_finished_accepts; the proxy refuses clients without TLS.
#
#   ./scripts/bench-mysql.sh            # 1, 16 and 64 clients, 3 rounds of 5 s each
#   CLIENTS="1 16" SECONDS_PER_RUN=10 ROUNDS=5 ./scripts/bench-mysql.sh
#   DEADBOLT_WORKER_THREADS=1 ./scripts/bench-mysql.sh   # the proxy on one worker thread
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
clients=${CLIENTS:-"1 16 64"}
duration=${SECONDS_PER_RUN:-5}
rows=10000

# shellcheck source=scripts/bench-db-lib.sh
. "$repo/scripts/bench-db-lib.sh"
missing_debs=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing_debs+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing_debs+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || missing_debs+=(sysbench)
command -v haproxy >/dev/null 2>&1 || missing_debs+=(haproxy)
install_debs "${missing_debs[@]}"
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

(cd "$repo" && cargo build -q --release -p deadbolt-operator -p deadbolt-sidecar --bins)
bin=$repo/target/release

work=$(mktemp -d /tmp/deadbolt-mysql-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Certificates: one Deadbolt CA signs MariaDB's and the proxy's server certificate and the client's.
bench_pki bench-mysql
# sysbench's fixed file names (see above), one directory per path.
for path in direct relay deadbolt; do
  mkdir -p "$work/sysbench-$path"
  cp "$work/ca/ca.crt" "$work/sysbench-$path/cacert.pem"
  cp "$work/client.crt" "$work/sysbench-$path/client-cert.pem"
  cp "$work/client.key" "$work/sysbench-$path/client-key.pem"
done

# MariaDB as the test harness starts it (support/mariadb.rs): a private data
# directory, the OS user as its root over the unix socket, TLS on loopback.
db_port=$(free_port); proxy_port=$(free_port); relay_port=$(free_port)
os_user=$(id -un)
small=(--innodb-log-file-size=4M --innodb-buffer-pool-size=16M --tmpdir="$work/tmp")
mkdir -p "$work/tmp"
out=$(mariadb-install-db --no-defaults --datadir="$work/data" --user="$os_user" --auth-root-authentication-method=socket \
  --auth-root-socket-user="$os_user" --skip-test-db "${small[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
"$mariadbd" --no-defaults --datadir="$work/data" --socket="$work/mysql.sock" --port="$db_port" --bind-address=127.0.0.1 \
  --pid-file="$work/mariadb.pid" --log-error="$work/mariadb.log" --skip-name-resolve --skip-log-bin --max-connections=300 \
  --user="$os_user" "${small[@]}" --ssl-cert="$work/server.crt" --ssl-key="$work/server.key" --ssl-ca="$work/ca/ca.crt" \
  </dev/null >/dev/null 2>&1 &
pids+=($!)
mariadb_pid=$!
# Without TLS: MariaDB's client would use it even on the socket, and count in Ssl_finished_accepts.
sql() { mariadb --no-defaults --skip-ssl --socket="$work/mysql.sock" --user=root --batch --skip-column-names -e "$1"; }
wait_for sql "SELECT 1"
sql "CREATE DATABASE app; CREATE USER 'app'@'%' IDENTIFIED BY 'app-secret'; GRANT ALL ON app.* TO 'app'@'%';"
# sysbench's common options; prepare goes straight to MariaDB.
sb=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-db=app --mysql-ssl=on --tables=1 --table-size="$rows")
(cd "$work/sysbench-direct" && sysbench oltp_point_select "${sb[@]}" --mysql-port="$db_port" --mysql-password=app-secret prepare >/dev/null)

start_deadbolt mysql bench-mysql "127.0.0.1:$db_port"
start_relay "127.0.0.1:$db_port"
hz=$(getconf CLK_TCK)

# TLS handshakes MariaDB completed: proof that the direct path is encrypted.
tls_accepts() { sql "SHOW GLOBAL STATUS LIKE 'Ssl_finished_accepts'" | awk '{ print $2 }'; }

run() { # run NAME CLIENTS -> "qps proxy_us_per_query mariadb_us_per_query"
  local name=$1 n=$2 out port password="" proxy_pid="" proxy_before=0 proxy_after=0 db_before db_after tls_before
  case $name in
    direct)   port=$db_port; password=app-secret ;;
    relay)    port=$relay_port; password=app-secret; proxy_pid=$relay_pid ;;
    deadbolt) port=$proxy_port; proxy_pid=$sidecar_pid ;; # the proxy authenticates the certificate; no password
  esac
  tls_before=$(tls_accepts)
  db_before=$(ticks "$mariadb_pid"); [ -n "$proxy_pid" ] && proxy_before=$(ticks "$proxy_pid")
  out=$(cd "$work/sysbench-$name" && sysbench oltp_point_select "${sb[@]}" --mysql-port="$port" --mysql-password="$password" \
          --threads="$n" --time="$duration" run 2>&1) || { echo "$out" >&2; exit 1; }
  sleep 0.5 # the sessions end
  db_after=$(ticks "$mariadb_pid"); [ -n "$proxy_pid" ] && proxy_after=$(ticks "$proxy_pid")
  if [ "$name" != deadbolt ] && [ $(($(tls_accepts) - tls_before)) -lt "$n" ]; then
    echo "sysbench did not use TLS to MariaDB on the $name path" >&2; exit 1
  fi
  local qps queries errors
  qps=$(grep -oP '^\s*queries:\s+[0-9]+\s+\(\K[0-9.]+(?= per sec)' <<<"$out") || { echo "$out" >&2; exit 1; }
  queries=$(grep -oP '^\s*queries:\s+\K[0-9]+' <<<"$out")
  errors=$(awk '/^ *(ignored errors|reconnects):/ { s += $(NF - 3) } END { print s + 0 }' <<<"$out")
  [ "$errors" = 0 ] || echo "$name, $n clients: sysbench reports $errors ignored errors and reconnects" >&2
  awk -v qps="$qps" -v q="$queries" -v hz="$hz" -v p=$((proxy_after - proxy_before)) -v m=$((db_after - db_before)) \
    'BEGIN { printf "%s %.1f %.1f\n", qps, 1e6 * p / hz / q, 1e6 * m / hz / q }'
}

echo "sysbench oltp_point_select (1 table, $rows rows), $rounds rounds of ${duration}s per path, TLS on every path," \
  "$(nproc) cores, proxy worker threads: ${DEADBOLT_WORKER_THREADS:-one per core}"
echo "Medians over the rounds; the ratio: median (range) of the rounds' ratios."
echo "relay: HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }') in TCP mode, a thread per core (TLS through to MariaDB)"
echo "CPU per query in microseconds: each proxy's (deadbolt-sidecar, haproxy) and MariaDB's"
printf '%8s %10s %10s %10s %10s %10s %24s %24s %24s\n' clients direct relay deadbolt "relay-cpu" "proxy-cpu" \
  "relay/direct" "deadbolt/direct" "deadbolt/relay"
for n in $clients; do
  rounds_of "$n" direct relay deadbolt
  printf '%8d %10.0f %10.0f %10.0f %8.1fus %8.1fus %24s %24s %24s\n' "$n" "$(median_of rate direct)" \
    "$(median_of rate relay)" "$(median_of rate deadbolt)" "$(median_of cpu relay)" "$(median_of cpu deadbolt)" \
    "$(versus relay direct)" "$(versus deadbolt direct)" "$(versus deadbolt relay)"
  echo "         MariaDB CPU per query: direct $(median_of server direct)us, via relay $(median_of server relay)us," \
    "via deadbolt $(median_of server deadbolt)us"
done
