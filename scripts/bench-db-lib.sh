# shellcheck shell=bash disable=SC2154,SC2034
# (the variables named below are the sourcing script's)
# What the database benches (bench-postgres.sh, bench-mysql.sh) share, sourced
# by both: the Deadbolt PKI and AccessRole every path uses, the operator and
# the sidecar as production runs them, and the rounds of their paths; with
# scripts/bench-lib.sh, what every bench shares. Expects $work (a temporary directory), $bin (release
# binaries) and the array pids (what cleanup stops).

# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"

# bench_pki SERVER_ID: one Deadbolt CA signing the server certificate every
# path serves ($work/server.*), the proxy's lock-view certificate
# ($work/proxy-view.*) and the bench client's ($work/client.*), and the
# AccessRole that lets the client in (access is denied by default).
bench_pki() {
  mkdir -p "$work/ca" "$work/manifests"
  ca() { "$bin/deadbolt-ca" --ca-dir "$work/ca" "$@" >/dev/null; }
  ca init
  ca --out "$work/server" serving --name localhost --name 127.0.0.1
  ca --out "$work/proxy-view" proxy --server-id "$1"
  ca --out "$work/client" user --user bench --group bench --manifests "$work/manifests"
  # The bench group may log in as app, to app.
  cat > "$work/manifests/bench-role.yaml" <<'YAML'
apiVersion: deadbolt.dev/v1
kind: AccessRole
metadata:
  name: bench
spec:
  groups: [bench]
  allow:
    dbUsers: [app]
    dbNames: [app]
    dbLabels:
      "*": ["*"]
YAML
}

# start_deadbolt KIND SERVER_ID UPSTREAM [FLAG...]: the operator on
# $work/manifests and `deadbolt-sidecar KIND` on $proxy_port in front of
# UPSTREAM, logging in as app, with any further sidecar flags; sets
# sidecar_pid and returns once the sidecar is ready.
start_deadbolt() {
  local kind=$1 server_id=$2 upstream=$3 op_port metrics_port
  shift 3
  op_port=$(free_port); metrics_port=$(free_port)
  "$bin/deadbolt-operator" --source "dir:$work/manifests" --ca-dir "$work/ca" --listen "127.0.0.1:$op_port" \
    --mfa-listen "127.0.0.1:$(free_port)" --metrics-listen "127.0.0.1:$(free_port)" --log-level warn \
    >"$work/operator.log" 2>&1 &
  pids+=($!)
  printf 'app:app-secret\n' > "$work/upstream-passwords"
  "$bin/deadbolt-sidecar" "$kind" --listen "127.0.0.1:$proxy_port" --server-id "$server_id" \
    --tls-cert "$work/server.crt" --tls-key "$work/server.key" --ca "$work/ca/ca.crt" \
    --view-url "https://localhost:$op_port" --view-cert "$work/proxy-view.crt" --view-key "$work/proxy-view.key" \
    --upstream "$upstream" --upstream-password-file "$work/upstream-passwords" \
    --metrics-listen "127.0.0.1:$metrics_port" --audit-log /dev/null --log-level warn "$@" >"$work/sidecar.log" 2>&1 &
  pids+=($!)
  sidecar_pid=$!
  if ! wait_until curl -sf "http://127.0.0.1:$metrics_port/readyz"; then
    echo "deadbolt-sidecar $kind did not become ready within 60 s; its log and the operator's:" >&2
    cat "$work/sidecar.log" "$work/operator.log" >&2
    exit 1
  fi
}

# rounds_of CLIENTS PATH...: $rounds rounds in which each PATH takes its turn
# with the script's `run PATH CLIENTS` (which prints "rate proxy_cpu
# server_cpu"); fills the associative arrays rate, cpu and server, keyed
# "PATH,ROUND".
declare -A rate cpu server
rounds_of() {
  local n=$1 round path figures r c s
  shift
  rate=(); cpu=(); server=()
  for ((round = 0; round < rounds; round++)); do
    for path in "$@"; do
      figures=$(run "$path" "$n") # a failed run stops the script (set -e)
      read -r r c s <<<"$figures"
      rate[$path,$round]=$r; cpu[$path,$round]=$c; server[$path,$round]=$s
    done
  done
}

# values ARRAY PATH: the path's values in ARRAY (rate, cpu or server), round by round.
values() {
  local -n of=$1
  local round in_order=()
  for ((round = 0; round < rounds; round++)); do in_order+=("${of[$2,$round]}"); done
  echo "${in_order[*]}"
}

# median_of ARRAY PATH: their median.
median_of() {
  local -a list
  read -ra list <<<"$(values "$1" "$2")"
  median "${list[@]}"
}

# versus A B: path A's rate against path B's, "median (min–max)" of the rounds' ratios in percent.
versus() {
  local -a list
  mapfile -t list < <(ratios "$(values rate "$1")" "$(values rate "$2")")
  spread %.1f%% "${list[@]}"
}
