#!/usr/bin/env bash
# Deadbolt's whole test suite, from a fresh Debian machine: installs what is
# missing, then runs formatting, lints and every test. `.ci/run` calls this.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

"$repo/scripts/install-tools.sh"
export PATH="$repo/.tools/bin:$PATH"
# One build from scratch: incremental state would only cost disk (gigabytes).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> shellcheck (the scripts and .ci/run)"
shellcheck scripts/*.sh .ci/run

echo "==> the benches' arithmetic (scripts/test-bench-lib.sh)"
"$repo/scripts/test-bench-lib.sh"

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> each proxy builds alone (cargo features postgres, mysql, kube)"
for proxy in postgres mysql kube; do
  cargo check -q -p deadbolt-sidecar --locked --no-default-features --features "$proxy"
done

echo "==> cargo test"
# `cargo test --workspace` builds every package's binaries too (each package
# has integration tests), with the same features, so nothing is built twice.
cargo test --workspace --locked

echo "==> Helm chart, Argo CD health checks, GitOps examples"
"$repo/scripts/test-chart.sh"

echo "==> container image layout (from the debug binaries)"
"$repo/scripts/test-image-layout.sh" --binary target/debug/deadbolt-operator --binary target/debug/deadbolt-sidecar

echo "==> e2e"
# Against the cluster KUBECONFIG names, or else a private API server from
# ../shared/k8s (with a node of this machine when it can have one), or SKIPPED.
kit="$repo/../shared/k8s"
e2e_state=""
stop_kit() {
  if [ -n "$e2e_state" ]; then
    bash "$kit/down.sh" "$e2e_state" >/dev/null 2>&1 || true
    rm -rf "$e2e_state" "$e2e_state.up.log"
  fi
}
run_e2e() {
  cargo test -p deadbolt-e2e --locked -- --ignored --test-threads=1 2>&1 | tee "$repo/target/e2e.log"
  local status=${PIPESTATUS[0]}
  grep -h '^SKIPPED' "$repo/target/e2e.log" | sed 's/^/e2e: /' || true
  [ "$status" = 0 ] || return "$status"
  echo "==> the chart on the API server (scripts/test-chart-server.sh)"
  "$repo/scripts/test-chart-server.sh"
}
if [ -n "${KUBECONFIG:-}" ]; then
  if kubectl version --request-timeout=5s >/dev/null 2>&1; then
    echo "e2e: against the cluster in KUBECONFIG ($KUBECONFIG)"
    export DEADBOLT_E2E_NO_NODE="${DEADBOLT_E2E_NO_NODE:-the node scenarios need the private API server from ../shared/k8s}"
    run_e2e
  else
    echo "e2e: SKIPPED - KUBECONFIG=$KUBECONFIG names a cluster that does not answer"
  fi
elif [ -f "$kit/up.sh" ]; then
  e2e_state=$(mktemp -d /tmp/deadbolt-e2e.XXXXXX)
  trap stop_kit EXIT
  if [ "$(id -u)" = 0 ] && kubeconfig=$(bash "$kit/up.sh" "$e2e_state" --node 2>"$e2e_state.up.log" | tail -1) && [ -n "$kubeconfig" ]; then
    echo "e2e: a private kube-apiserver with a node of this machine ($e2e_state)"
    export DEADBOLT_E2E_STATE="$e2e_state" DEADBOLT_E2E_KIT="$kit"
  else
    reason="the node could not start (up.sh --node needs root; see $e2e_state.up.log)"
    [ "$(id -u)" = 0 ] || reason="the node needs root"
    bash "$kit/down.sh" "$e2e_state" >/dev/null 2>&1 || true
    kubeconfig=$(bash "$kit/up.sh" "$e2e_state" 2>>"$e2e_state.up.log" | tail -1)
    echo "e2e: a private kube-apiserver without a node ($reason)"
    export DEADBOLT_E2E_NO_NODE="$reason"
  fi
  export KUBECONFIG="$kubeconfig"
  run_e2e
else
  echo "e2e: SKIPPED - no reachable cluster (set KUBECONFIG to a kind, k3d or real cluster, or put the kube-apiserver kit at ../shared/k8s)"
fi
