#!/usr/bin/env bash
# From a Lock created through the Kubernetes API to 1,000 live PostgreSQL
# sessions and 1,000 watches hearing about it, against a real API server:
# KUBECONFIG's, or a private one started from ../shared/k8s for the run.
# DEADBOLT_BENCH_TRIALS=20 by default.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.tools/bin:$PATH"
cargo build --release --locked --bins
state=""
if [ -z "${KUBECONFIG:-}" ]; then
  kit="$repo/../shared/k8s"
  [ -f "$kit/up.sh" ] || { echo "set KUBECONFIG, or put the kube-apiserver kit at ../shared/k8s" >&2; exit 1; }
  state=$(mktemp -d /tmp/deadbolt-bench.XXXXXX)
  trap 'bash "$kit/down.sh" "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
  KUBECONFIG=$(bash "$kit/up.sh" "$state" 2>/dev/null | tail -1)
  export KUBECONFIG
fi
cargo bench --locked -p deadbolt-e2e --bench api_propagation
