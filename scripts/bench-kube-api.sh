#!/usr/bin/env bash
# The kube-API proxy against a real API server, side by side in one run:
# h2load GETs one ConfigMap with one ServiceAccount token, straight to the API
# server and through deadbolt-sidecar kube (--token-review, the same identity
# impersonated upstream). Prints req/s, p50 and p99 of each path and their
# ratios, and the proxy's CPU seconds per 1,000 requests and RSS from /proc;
# when the API server and etcd run on this machine, also their CPU per 1,000
# requests on each path. The baseline is nghttpx, a TLS HTTP/2 reverse proxy
# in C that checks nothing and passes the token through, on the same run:
# what a proxy that terminates TLS and HTTP/2 costs here; and HAProxy
# relaying TCP, TLS end to end: the hop alone. With the proxy's
# ServiceAccount token (the default) a further path goes straight to the API
# server as that ServiceAccount, with the impersonation headers the proxy
# sends for the bench identity: what impersonation alone costs the API
# server; and one more with the identity's two groups named as well, as the
# proxy named them before it left them to the API server: what two more
# authorization checks per request cost it.
#
# The cluster is the one KUBECONFIG names, or else a private kube-apiserver
# started from ../shared/k8s (the CI kit) and stopped at the end. h2load,
# nghttpx and haproxy come from Debian's nghttp2-client, nghttp2-proxy and
# haproxy, installed when missing.
#
# Each client count is measured in rounds (scripts/bench-lib.sh): medians,
# and the median and range of the ratios of paths measured in the same round.
#
#   ./scripts/bench-kube-api.sh                    # 8 and 32 clients, 3 rounds of 10,000 requests per path
#   CLIENTS="8" REQUESTS=5000 ROUNDS=5 ./scripts/bench-kube-api.sh
#   PROFILE=1 ./scripts/bench-kube-api.sh          # also `perf record` the proxy (perf.data in target/)
#   DEADBOLT_WORKER_THREADS=1 ./scripts/bench-kube-api.sh   # the proxy on one worker thread
#   UPSTREAM_AUTH=kubeconfig ./scripts/bench-kube-api.sh    # the proxy forwards with KUBECONFIG's own
#                                                           # credentials, not a ServiceAccount token
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
clients=${CLIENTS:-"8 32"}
requests=${REQUESTS:-10000}
# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
case ${UPSTREAM_AUTH:=token} in
  token | kubeconfig) ;;
  *) echo "UPSTREAM_AUTH is token (the default) or kubeconfig, not ${UPSTREAM_AUTH}" >&2; exit 2 ;;
esac
export PATH="$repo/.tools/bin:$PATH"

# h2load, nghttpx (the baseline proxy), haproxy (the relay) and PyYAML (to pick the chart's RBAC).
missing_debs=()
command -v h2load >/dev/null || missing_debs+=(nghttp2-client)
command -v nghttpx >/dev/null || [ -x /usr/sbin/nghttpx ] || missing_debs+=(nghttp2-proxy)
command -v haproxy >/dev/null || missing_debs+=(haproxy)
python3 -c 'import yaml' 2>/dev/null || missing_debs+=(python3-yaml)
install_debs "${missing_debs[@]}"
nghttpx=$(command -v nghttpx || echo /usr/sbin/nghttpx)
if ! command -v kubectl >/dev/null || ! command -v helm >/dev/null; then
  "$repo/scripts/install-tools.sh"
fi

(cd "$repo" && cargo build -q --release -p deadbolt-operator -p deadbolt-sidecar --bins)
bin=$repo/target/release

work=$(mktemp -d /tmp/deadbolt-kube-bench.XXXXXX)
pids=()
kit_state=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${ns:-}" ]; then
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    if [ -n "${proxy_rbac:-}" ]; then kubectl delete -f "$proxy_rbac" --ignore-not-found >/dev/null 2>&1 || true; fi
  fi
  if [ -n "$kit_state" ]; then
    bash "$repo/../shared/k8s/down.sh" "$kit_state" >/dev/null 2>&1 || true
    rm -rf "$kit_state"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${KUBECONFIG:-}" ]; then
  [ -f "$repo/../shared/k8s/up.sh" ] || { echo "SKIPPED: no KUBECONFIG and no ../shared/k8s kit"; exit 0; }
  kit_state=$(mktemp -d /tmp/deadbolt-kube-bench-kit.XXXXXX)
  echo "==> starting a private kube-apiserver (../shared/k8s)"
  export KUBECONFIG
  KUBECONFIG=$(bash "$repo/../shared/k8s/up.sh" "$kit_state" | tail -n 1)
fi
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')

# One identity for both paths: a ServiceAccount that may read ConfigMaps here.
ns=deadbolt-bench-$RANDOM
kubectl create namespace "$ns" >/dev/null
kubectl -n "$ns" create serviceaccount bench >/dev/null
kubectl -n "$ns" create rolebinding bench --clusterrole=view --serviceaccount="$ns:bench" >/dev/null
kubectl -n "$ns" create configmap settings --from-literal=a=1 >/dev/null
token=$(kubectl -n "$ns" create token bench --duration=1h)
path="/api/v1/namespaces/$ns/configmaps/settings"

# The proxy's upstream credentials: by default, as the Helm chart deploys it,
# a token of the chart's kube-proxy ServiceAccount with the chart's own
# ClusterRole (rendered by helm, so the bench follows the chart, and named
# for this run, so nothing of an installed Deadbolt is touched); with
# UPSTREAM_AUTH=kubeconfig, KUBECONFIG's own.
upstream_kubeconfig=$KUBECONFIG
if [ "$UPSTREAM_AUTH" = token ]; then
  helm template "$ns" "$repo/charts/deadbolt" -n "$ns" --set kubeProxy.enabled=true --set fullnameOverride="$ns" \
      --show-only templates/kube-proxy.yaml | python3 -c '
import sys, yaml
kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] in kinds]
yaml.safe_dump_all(docs, open(sys.argv[1], "w"))
print(next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"))' \
    "$work/proxy-rbac.yaml" >"$work/proxy-sa"
  proxy_rbac=$work/proxy-rbac.yaml
  kubectl apply -f "$proxy_rbac" >/dev/null
  upstream_kubeconfig=$work/upstream.kubeconfig
  proxy_token=$(kubectl -n "$ns" create token "$(cat "$work/proxy-sa")" --duration=1h)
  kubectl config view --minify --raw -o json | python3 -c '
import json, sys
config = json.load(sys.stdin)
config["users"][0]["user"] = {"token": sys.argv[1]}
json.dump(config, sys.stdout)' "$proxy_token" >"$upstream_kubeconfig"
fi

# The lock view from a standalone operator.
mkdir -p "$work/ca" "$work/manifests"
ca() { "$bin/deadbolt-ca" --ca-dir "$work/ca" "$@" >/dev/null; }
ca init
ca --out "$work/serving" serving --name localhost --name 127.0.0.1
ca --out "$work/view" proxy --server-id bench-kube
op_port=$(free_port); proxy_port=$(free_port); metrics_port=$(free_port)
"$bin/deadbolt-operator" --source "dir:$work/manifests" --ca-dir "$work/ca" --listen "127.0.0.1:$op_port" \
  --mfa-listen "127.0.0.1:$(free_port)" --metrics-listen "127.0.0.1:$(free_port)" --log-level warn \
  >"$work/operator.log" 2>&1 &
pids+=($!)
"$bin/deadbolt-sidecar" kube --listen "127.0.0.1:$proxy_port" --server-id bench-kube \
  --tls-cert "$work/serving.crt" --tls-key "$work/serving.key" --ca "$work/ca/ca.crt" \
  --view-url "https://localhost:$op_port" --view-cert "$work/view.crt" --view-key "$work/view.key" \
  --upstream-kubeconfig "$upstream_kubeconfig" --token-review \
  --metrics-listen "127.0.0.1:$metrics_port" --audit-log /dev/null --log-level warn >"$work/sidecar.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
wait_for curl -sf "http://127.0.0.1:$metrics_port/readyz"
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "https://127.0.0.1:$proxy_port$path")
[ "$code" = 200 ] || { echo "the proxy answered $code for $path" >&2; cat "$work/sidecar.log" >&2; exit 1; }

# The baseline proxy in front of the same API server, verifying it with the
# kubeconfig's CA (skipped when the kubeconfig names none). The name checked
# is the server's host, or localhost for a loopback address (nghttpx matches
# only DNS names).
server_host=$(sed -E 's#^https://(\[[^]]*\]|[^:/]+).*#\1#' <<<"$server")
server_port=$(sed -nE 's#^https://[^/]*:([0-9]+).*#\1#p' <<<"$server")
server_port=${server_port:-443}
kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' |
  base64 -d >"$work/server-ca.crt" 2>/dev/null || true
if [ ! -s "$work/server-ca.crt" ]; then
  ca_file=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  if [ -n "$ca_file" ]; then cp "$ca_file" "$work/server-ca.crt"; fi
fi
baseline_pid=""
if [ -s "$work/server-ca.crt" ]; then
  sni=$server_host
  case $sni in 127.* | ::1 | "[::1]") sni=localhost ;; esac
  baseline_port=$(free_port)
  "$nghttpx" --conf=/dev/null --single-process --no-ocsp --no-via \
    -b "$server_host,$server_port;;tls;sni=$sni;proto=h2" -f "127.0.0.1,$baseline_port" \
    --cacert="$work/server-ca.crt" "$work/serving.key" "$work/serving.crt" \
    --errorlog-file="$work/nghttpx.log" --accesslog-file=/dev/null &
  baseline_pid=$!
  pids+=("$baseline_pid")
  wait_for curl -sfk -o /dev/null -H "Authorization: Bearer $token" "https://127.0.0.1:$baseline_port$path"
fi

hz=$(getconf CLK_TCK)
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# The API server's and etcd's CPU, when they run here (the kit, or a local cluster).
server_pids=$(pgrep -x kube-apiserver; pgrep -x etcd) || true
server_ticks() {
  local total=0 pid
  for pid in $server_pids; do total=$((total + $(ticks "$pid"))); done
  echo "$total"
}

# bench URL CLIENTS [TOKEN [HEADER...]] -> "req/s p50_ms p99_ms" (TOKEN: the bench identity's by default)
bench() {
  local url=$1 n=$2 bearer=${3:-$token} log="$work/h2load.log" headers=()
  shift $(($# < 3 ? $# : 3))
  for header in "$@"; do headers+=(-H "$header"); done
  rm -f "$log"
  local out
  out=$(h2load -n "$requests" -c "$n" -m 1 -H "Authorization: Bearer $bearer" "${headers[@]}" --log-file="$log" "$url" 2>&1)
  grep -q "$requests succeeded" <<<"$out" || grep -q "succeeded, 0 failed" <<<"$out" || { echo "$out" >&2; exit 1; }
  local rps
  rps=$(grep -oP 'finished in [0-9.]+m?s, \K[0-9.]+(?= req/s)' <<<"$out")
  cut -f3 "$log" | sort -n | awk -v rps="$rps" '{ v[NR] = $1 } END {
    printf "%s %.2f %.2f\n", rps, v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }'
}

# The cheapest hop: HAProxy relaying TCP, TLS end to end with the API server.
relay_port=$(free_port)
start_relay "$server_host:$server_port"

echo "h2load GET $path, $rounds rounds of $requests requests per path, one ServiceAccount token, $(nproc) cores"
echo "API server $server (direct) and deadbolt-sidecar kube on 127.0.0.1:$proxy_port (--token-review, upstream credentials: $UPSTREAM_AUTH)"
echo "Below each row:"
if [ -n "$baseline_pid" ]; then
  echo "  nghttpx on 127.0.0.1:$baseline_port, a baseline proxy (one thread, TLS both sides, no checks)"
fi
echo "  relay: HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }') in TCP mode on 127.0.0.1:$relay_port (a thread per core, TLS through to the API server)"
# What the proxy sends upstream for the bench identity's GETs: the user
# alone, since the API server gives an impersonated ServiceAccount its two
# groups itself (a session id goes along only for registered sessions:
# watches, followed logs, exec, attach, port-forward); and the same with the
# groups named.
impersonation=("Impersonate-User: system:serviceaccount:$ns:bench")
with_groups=(
  "${impersonation[@]}"
  "Impersonate-Group: system:serviceaccounts"
  "Impersonate-Group: system:serviceaccounts:$ns"
)
if [ -n "${proxy_token:-}" ]; then
  echo "  imperson: straight to the API server as the proxy's ServiceAccount, impersonating the bench identity"
  echo "  +groups: the same, naming its two groups too"
  for headers in impersonation with_groups; do
    declare -n sent=$headers
    code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $proxy_token" "${sent[@]/#/-H}" "$server$path")
    [ "$code" = 200 ] || { echo "the impersonated request ($headers) was answered $code" >&2; exit 1; }
  done
fi
echo "Medians over the rounds; ratios: median (range) of the rounds' ratios; CPU: all rounds"
printf '%8s %11s %11s %18s %10s %10s %10s %10s %9s %14s %9s %17s\n' \
  clients direct-rps proxy-rps ratio "p50-direct" "p50-proxy" "p99-direct" "p99-proxy" "p50-added" "proxy-cpu/1k" proxy-rss \
  "server-cpu/1k"

# measure PATH URL CLIENTS PID [TOKEN [HEADER...]]: one h2load run of the
# path; appends its req/s and p50 to PATH_rps and PATH_p50, and adds the CPU
# ticks of PID (none when empty) and of the API server to PATH_cpu and
# PATH_server.
measure() {
  local name=$1 url=$2 n=$3 pid=$4 before=0 server_before figures rps p50
  shift 4
  server_before=$(server_ticks)
  [ -z "$pid" ] || before=$(ticks "$pid")
  figures=$(bench "$url" "$n" "$@") # a failed run stops the script (set -e)
  read -r rps p50 _ <<<"$figures"
  # shellcheck disable=SC2178 # names of the path's variables
  local -n path_rps=${name}_rps path_p50=${name}_p50 path_cpu=${name}_cpu path_server=${name}_server
  path_rps+=("$rps"); path_p50+=("$p50")
  [ -z "$pid" ] || path_cpu=$((path_cpu + $(ticks "$pid") - before))
  path_server=$((path_server + $(server_ticks) - server_before))
}

# row PATH LABEL [VERSUS]: the line of a path below its client count's: req/s,
# its ratio to direct, p50 and p50 added, its CPU per 1,000 requests (when it
# is a process here) and the API server's; VERSUS: a last column.
row() {
  local name=$1 label=$2 versus=${3:-}
  # shellcheck disable=SC2178 # names of the path's variables
  local -n path_rps=${name}_rps path_p50=${name}_p50 path_cpu=${name}_cpu path_server=${name}_server
  mapfile -t vs_direct < <(ratios "${path_rps[*]}" "${direct_rps[*]}" 1)
  awk -v label="$label" -v r="$(median "${path_rps[@]}")" -v ratio="$(spread %.2f "${vs_direct[@]}")" \
      -v d50="$(median "${direct_p50[@]}")" -v p50="$(median "${path_p50[@]}")" -v cpu="$path_cpu" -v hz="$hz" \
      -v req="$total" -v server="$path_server" -v local_server="${server_pids:+1}" -v versus="$versus" \
    'BEGIN { printf "%8s %11s %11.0f %18s %10s %8.2fms %10s %10s %7.2fms", label, "", r, ratio, "", p50, "", "", p50 - d50
             if (cpu != "") printf " %12.3fs %9s", 1000 * cpu / hz / req, ""; else printf " %14s %9s", "", ""
             if (local_server) printf " %16.3fs", 1000 * server / hz / req
             if (versus != "") printf "   %s", versus
             printf "\n" }'
}

bench "https://127.0.0.1:$proxy_port$path" 4 >/dev/null # warm the connections and the token cache
for n in $clients; do
  direct_rps=(); direct_p50=(); direct_server=0; d_p99=()
  proxy_rps=(); proxy_p50=(); proxy_cpu=0; proxy_server=0; p_p99=()
  # shellcheck disable=SC2034 # measure and row reach these by name
  {
    baseline_rps=(); baseline_p50=(); baseline_cpu=0; baseline_server=0
    relay_rps=(); relay_p50=(); relay_cpu=0; relay_server=0
    imperson_rps=(); imperson_p50=(); imperson_cpu=""; imperson_server=0
    groups_rps=(); groups_p50=(); groups_cpu=""; groups_server=0
  }
  if [ -n "${PROFILE:-}" ]; then
    # DWARF unwinding: release builds keep no frame pointers.
    perf record -F 999 --call-graph dwarf,16384 -o "$repo/target/perf-kube-proxy-$n.data" -p "$proxy_pid" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
  for ((round = 0; round < rounds; round++)); do
    server_before=$(server_ticks)
    figures=$(bench "$server$path" "$n")
    read -r rps p50 p99 <<<"$figures"
    direct_rps+=("$rps"); direct_p50+=("$p50"); d_p99+=("$p99")
    direct_server=$((direct_server + $(server_ticks) - server_before))
    server_before=$(server_ticks)
    before=$(ticks "$proxy_pid")
    figures=$(bench "https://127.0.0.1:$proxy_port$path" "$n")
    read -r rps p50 p99 <<<"$figures"
    proxy_rps+=("$rps"); proxy_p50+=("$p50"); p_p99+=("$p99")
    proxy_cpu=$((proxy_cpu + $(ticks "$proxy_pid") - before))
    proxy_server=$((proxy_server + $(server_ticks) - server_before))
    if [ -n "$baseline_pid" ]; then
      measure baseline "https://127.0.0.1:$baseline_port$path" "$n" "$baseline_pid"
    fi
    measure relay "https://127.0.0.1:$relay_port$path" "$n" "$relay_pid"
    if [ -n "${proxy_token:-}" ]; then
      measure imperson "$server$path" "$n" "" "$proxy_token" "${impersonation[@]}"
      measure groups "$server$path" "$n" "" "$proxy_token" "${with_groups[@]}"
    fi
  done
  if [ -n "${PROFILE:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  mapfile -t proxy_vs_direct < <(ratios "${proxy_rps[*]}" "${direct_rps[*]}" 1)
  total=$((requests * rounds))
  awk -v n="$n" -v dr="$(median "${direct_rps[@]}")" -v pr="$(median "${proxy_rps[@]}")" -v ratio="$(spread %.2f "${proxy_vs_direct[@]}")" \
      -v d50="$(median "${direct_p50[@]}")" -v p50="$(median "${proxy_p50[@]}")" -v d99="$(median "${d_p99[@]}")" -v p99="$(median "${p_p99[@]}")" \
      -v cpu="$proxy_cpu" -v hz="$hz" -v req="$total" -v rss="$(rss_kib "$proxy_pid")" \
      -v sd="$direct_server" -v sp="$proxy_server" -v local_server="${server_pids:+1}" \
    'BEGIN { printf "%8d %11.0f %11.0f %18s %8.2fms %8.2fms %8.2fms %8.2fms %7.2fms %12.3fs %7.1fMiB",
             n, dr, pr, ratio, d50, p50, d99, p99, p50 - d50, 1000 * cpu / hz / req, rss / 1024
             if (local_server) printf " %6.3fs → %6.3fs", 1000 * sd / hz / req, 1000 * sp / hz / req
             printf "\n" }'
  if [ -n "$baseline_pid" ]; then
    mapfile -t proxy_vs_baseline < <(ratios "${proxy_rps[*]}" "${baseline_rps[*]}" 1)
    row baseline nghttpx "deadbolt/nghttpx $(spread %.2f "${proxy_vs_baseline[@]}")"
  fi
  mapfile -t proxy_vs_relay < <(ratios "${proxy_rps[*]}" "${relay_rps[*]}" 1)
  row relay relay "deadbolt/relay $(spread %.2f "${proxy_vs_relay[@]}")"
  if [ -n "${proxy_token:-}" ]; then
    row imperson imperson
    mapfile -t imperson_vs_groups < <(ratios "${imperson_rps[*]}" "${groups_rps[*]}" 1)
    row groups +groups "imperson/+groups $(spread %.2f "${imperson_vs_groups[@]}")"
  fi
done
