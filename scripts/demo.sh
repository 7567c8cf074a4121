#!/usr/bin/env bash
# Deadbolt's main job, locally, in one command: a real PostgreSQL, the operator
# reading locks from a directory, and the Postgres sidecar in front of the
# database. It opens a live psql session, writes a lock manifest, shows the
# session cut and a new connection refused with the lock's message, deletes the
# lock, and shows access coming back. Everything lives in a temporary directory
# and is cleaned up on exit. Exits non-zero if Deadbolt does not behave.
#
#   ./scripts/demo.sh            (builds the binaries if needed)
#   DEADBOLT_BIN=target/debug ./scripts/demo.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${DEADBOLT_BIN:-$repo/target/debug}
if [ -z "${DEADBOLT_BIN:-}" ]; then
  (cd "$repo" && cargo build -q -p deadbolt-operator -p deadbolt-sidecar --bins)
fi
for b in deadbolt-operator deadbolt-sidecar deadbolt-ca; do
  [ -x "$bin/$b" ] || { echo "demo: $bin/$b is missing; run: cargo build --bins" >&2; exit 1; }
done
pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || { echo "demo: PostgreSQL is not installed; run scripts/install-tools.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/deadbolt-demo.XXXXXX)
pids=()
cleanup() {
  exec 3>&- 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
fail() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

step "Starting a real PostgreSQL in $work/pg"
pg_port=$(free_port)
echo 'postgres-secret' > "$work/pgpass"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
as_pg "$pg_bin/initdb" -D "$work/pg" -U postgres --pwfile="$work/pgpass" --auth-local=trust \
  --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
PGPASSWORD=postgres-secret psql -h 127.0.0.1 -p "$pg_port" -U postgres -XAtq \
  -c "CREATE ROLE app LOGIN PASSWORD 'app-secret'" -c "CREATE DATABASE app OWNER app"
say "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (upstream login by SCRAM)"

step "Starting the Deadbolt operator with its dir: source ($work/manifests)"
mkdir -p "$work/manifests"
"$bin/deadbolt-ca" --ca-dir "$work/ca" init >/dev/null
# Access is denied by default: this role lets the engineers group in as the
# database user app, to the database app, on proxies labelled env=demo.
cat >"$work/manifests/role-engineers.yaml" <<'YAML'
apiVersion: deadbolt.dev/v1
kind: AccessRole
metadata:
  name: engineers-app
spec:
  groups: [engineers]
  allow:
    dbUsers: [app]
    dbNames: [app]
    dbLabels:
      env: [demo]
YAML
op_port=$(free_port)
"$bin/deadbolt-operator" --source "dir:$work/manifests" --ca-dir "$work/ca" --mfa-listen "127.0.0.1:$(free_port)" \
  --listen "127.0.0.1:$op_port" --metrics-listen "127.0.0.1:$(free_port)" \
  --log-level warn >"$work/operator.log" 2>&1 &
pids+=($!)
wait_for 20 "the Deadbolt CA" test -s "$work/ca/ca.crt"
say "lock-view stream on https://localhost:$op_port (HTTP/2, TLS, Deadbolt CA in $work/ca)"

step "Issuing certificates from the Deadbolt CA"
ca() { "$bin/deadbolt-ca" --ca-dir "$work/ca" "$@" >/dev/null; }
ca --out "$work/proxy-view" proxy --server-id demo-postgres
ca --out "$work/proxy-serving" serving --name localhost --name 127.0.0.1
ca --out "$work/alice" user --user alice --group engineers --manifests "$work/manifests"
say "proxy (server id demo-postgres), the proxy's serving certificate, and alice's client certificate"

step "Starting the Deadbolt Postgres sidecar in front of the database"
proxy_port=$(free_port)
metrics_port=$(free_port)
printf 'app:app-secret\n' > "$work/upstream-passwords"
"$bin/deadbolt-sidecar" postgres --listen "127.0.0.1:$proxy_port" --server-id demo-postgres --label env=demo \
  --tls-cert "$work/proxy-serving.crt" --tls-key "$work/proxy-serving.key" --ca "$work/ca/ca.crt" \
  --view-url "https://localhost:$op_port" --view-cert "$work/proxy-view.crt" --view-key "$work/proxy-view.key" \
  --upstream "127.0.0.1:$pg_port" --upstream-password-file "$work/upstream-passwords" \
  --metrics-listen "127.0.0.1:$metrics_port" --audit-log "$work/audit.log" \
  --log-level warn >"$work/sidecar.log" 2>&1 &
pids+=($!)
wait_for 20 "the sidecar's first lock-view snapshot" curl -sf "http://127.0.0.1:$metrics_port/readyz"
say "listening on 127.0.0.1:$proxy_port; /readyz is ready (snapshot received)"

conninfo="host=localhost port=$proxy_port user=app dbname=app sslmode=verify-full \
sslrootcert=$work/ca/ca.crt sslcert=$work/alice.crt sslkey=$work/alice.key"

step "1/4 Opening a live psql session as alice (database user app) through the proxy"
mkfifo "$work/psql.in"
psql "$conninfo" -XAt <"$work/psql.in" >"$work/psql.out" 2>"$work/psql.err" &
pids+=($!)
exec 3>"$work/psql.in"
echo "select 'connected as ' || current_user || ' to ' || current_database();" >&3
wait_for 20 "the live session's first answer" grep -q connected "$work/psql.out"
say "psql> $(cat "$work/psql.out")"

step "2/4 Writing a lock manifest ($work/manifests/lock-alice.yaml)"
cat >"$work/manifests/lock-alice.yaml" <<'YAML'
apiVersion: deadbolt.dev/v1
kind: Lock
metadata:
  name: lock-alice
spec:
  target:
    user: alice
  message: "Suspicious activity."
YAML
sed 's/^/    /' "$work/manifests/lock-alice.yaml"

step "3/4 The live session is cut, and a new connection is refused"
wait_for 20 "the session to be cut" grep -q session.terminated "$work/audit.log"
echo "select 'still here?';" >&3 2>/dev/null || true
exec 3>&-
wait_for 20 "psql to report the cut" grep -q "lock targeting" "$work/psql.err"
say "live psql session printed:"
sed 's/^/      /' "$work/psql.err"
grep -q 'FATAL:  lock targeting User:"alice" is in force: Suspicious activity.' "$work/psql.err" \
  || fail "the live session did not show the lock message"
if refused=$(psql "$conninfo" -XAtc "select 1" 2>&1); then fail "a new connection was let in"; fi
say "new connection:"
printf '%s\n' "$refused" | sed 's/^/      /'
grep -q 'lock targeting User:"alice" is in force: Suspicious activity.' <<<"$refused" \
  || fail "the refusal did not carry the lock message"

step "4/4 Deleting the lock; access comes back"
rm "$work/manifests/lock-alice.yaml"
wait_for 20 "access to come back" psql "$conninfo" -XAtc "select 1"
say "psql> $(psql "$conninfo" -XAtc "select 'welcome back, ' || current_user")"

step "Audit events (JSON lines)"
sed 's/^/    /' "$work/audit.log"
printf '\ndemo OK\n'
