#!/usr/bin/env bash
# Installs the Helm chart into a real kube-apiserver and checks what the
# server makes of it: `helm install --dry-run=server`, a real install, the
# objects it creates, the RBAC it grants (kubectl auth can-i as the operator, the
# kube-API proxy and users bound to the aggregated roles), the admission
# webhooks' matchConditions and failure policies as the API server applies
# them while no operator runs, an upgrade to strict mode, and an uninstall that
# leaves only the CRDs.
#
# The cluster: KUBECONFIG when it names a reachable cluster that has no
# Deadbolt installed; otherwise a private control plane from ../shared/k8s
# (up.sh), stopped afterwards; otherwise it prints SKIPPED. The operator's
# image is set to one that cannot be pulled, so no operator ever answers and
# the failure policies decide (without a node, pods stay Pending anyway).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
chart=$repo/charts/deadbolt
kit=$(cd "$repo/.." && pwd)/shared/k8s
ns=${DEADBOLT_TEST_NAMESPACE:-deadbolt-chart-test}
release=deadbolt
export PATH="$repo/.tools/bin:$PATH"
cd "$repo"

for tool in helm kubectl; do
  command -v "$tool" >/dev/null || { echo "chart-server: SKIPPED - $tool not found (run scripts/install-tools.sh)"; exit 0; }
done

state=
own_cluster=false
touched=false   # set once the test starts changing the cluster
cleanup() {
  local rc=$?
  if [ "$touched" = true ] && [ "$own_cluster" = false ]; then
    # A cluster we were given: remove what the test made, and the CRDs if it installed them.
    helm uninstall "$release" -n "$ns" >/dev/null 2>&1 || true
    kubectl delete validatingwebhookconfiguration deadbolt-validating --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete mutatingwebhookconfiguration deadbolt-mutating --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete clusterrolebinding,clusterrole -l deadbolt-chart-test=true --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete lock -l deadbolt-chart-test=true --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    if [ "${crds_were_there:-true}" = false ]; then
      kubectl delete -f "$chart/crds/" --ignore-not-found >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$state" ]; then
    bash "$kit/down.sh" "$state" >/dev/null 2>&1 || true
    rm -rf "$state"
  fi
  exit $rc
}
trap cleanup EXIT

if [ -n "${KUBECONFIG:-}" ] && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  if kubectl get clusterrole deadbolt-operator >/dev/null 2>&1 || kubectl get validatingwebhookconfiguration deadbolt-validating >/dev/null 2>&1; then
    echo "chart-server: SKIPPED - the cluster in KUBECONFIG already runs Deadbolt; the chart's names are cluster-wide"
    exit 0
  fi
  echo "==> cluster from KUBECONFIG ($(kubectl config current-context 2>/dev/null || echo '?'))"
elif [ -f "$kit/up.sh" ]; then
  state=$(mktemp -d "${TMPDIR:-/tmp}/deadbolt-chart.XXXXXX")
  echo "==> starting a private kube-apiserver ($kit/up.sh $state)"
  kubeconfig=$(bash "$kit/up.sh" "$state" 2>"$state.up.log" | tail -1) || { cat "$state.up.log" >&2; rm -f "$state.up.log"; exit 1; }
  rm -f "$state.up.log"
  export KUBECONFIG=$kubeconfig
  own_cluster=true
else
  echo "chart-server: SKIPPED - no reachable cluster in KUBECONFIG and no ../shared/k8s to start one"
  exit 0
fi
echo "    server $(kubectl version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1), $(helm version --short)"

passed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }
# expect_allowed DESCRIPTION COMMAND...: the command must succeed.
expect_allowed() {
  local what=$1; shift
  local out
  out=$("$@" 2>&1) || fail "$what: $out"
  ok "$what"
}
# expect_refused DESCRIPTION PATTERN COMMAND...: the command must fail with PATTERN in its output.
expect_refused() {
  local what=$1 pattern=$2; shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what: was allowed ($out)"; fi
  grep -q -- "$pattern" <<<"$out" || fail "$what: failed without \"$pattern\": $out"
  ok "$what"
}
# can_i yes|no SUBJECT VERB RESOURCE [kubectl auth can-i flags...]
can_i() {
  local want=$1 who=$2; shift 2
  local got
  got=$(kubectl auth can-i "$@" --as="$who" 2>/dev/null || true)
  [ "$got" = "$want" ] || fail "can-i $* as $who: got '$got', want '$want'"
  ok "can-i $* as ${who##*:}: $want"
}

# sar yes|no USER GROUP RESOURCE SUBRESOURCE VERB [NAMESPACE]: a SubjectAccessReview,
# for resources kubectl cannot name unambiguously (core "users" vs deadbolt.dev users).
sar() {
  local want=$1 user=$2 group=$3 resource=$4 sub=$5 verb=$6 namespace=${7:-}
  local got
  got=$(kubectl create -o jsonpath='{.status.allowed}' -f - <<EOF 2>&1
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: "$user"
  groups: [system:serviceaccounts, system:authenticated]
  resourceAttributes: {group: "$group", resource: "$resource", subresource: "$sub", verb: "$verb", namespace: "$namespace", name: someone}
EOF
)
  [ "$got" = true ] && got=yes || got=no
  [ "$got" = "$want" ] || fail "SubjectAccessReview $verb ${group:-core}/$resource${sub:+/$sub} as $user: got $got, want $want"
  ok "SubjectAccessReview $verb ${group:-core}/$resource${sub:+/$sub} as ${user##*:}: $want"
}

operator_sa=system:serviceaccount:$ns:deadbolt-operator
proxy_sa=system:serviceaccount:$ns:deadbolt-kube-proxy
unpullable=(--set image.repository=deadbolt.invalid/not-pulled --set image.tag=never)

crds_were_there=true
kubectl get crd locks.deadbolt.dev >/dev/null 2>&1 || crds_were_there=false
touched=true

echo "==> helm install --dry-run=server"
for values in "" "$chart/ci/kube-proxy-values.yaml" "$chart/ci/no-injection-values.yaml"; do
  expect_allowed "dry-run=server ${values:+${values#"$repo"/}}${values:+ }(namespace $ns)" \
    helm install "$release" "$chart" -n "$ns" --create-namespace --dry-run=server ${values:+-f "$values"} "${unpullable[@]}"
done

echo "==> CRDs, a Lock made before the install, test identities"
kubectl apply --server-side -f "$chart/crds/" >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for name in before-install-1 before-install-2; do
  kubectl apply -f - >/dev/null <<EOF
apiVersion: deadbolt.dev/v1
kind: Lock
metadata:
  name: $name
  labels: {deadbolt-chart-test: "true"}
spec:
  target: {user: mallory@example.com}
  message: "Made before the chart was installed."
EOF
done
kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deadbolt-chart-test, namespace: $ns}
rules:
  - apiGroups: [""]
    resources: [configmaps, pods]
    verbs: [create, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deadbolt-chart-test, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deadbolt-chart-test}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: someone@example.com}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:deadbolt-test-component"}
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts:kube-system"}
  - {kind: ServiceAccount, name: deadbolt-operator, namespace: $ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: deadbolt-chart-test-view, labels: {deadbolt-chart-test: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer@example.com}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: deadbolt-chart-test-admin, labels: {deadbolt-chart-test: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: admin-user@example.com}]
EOF
ok "CRDs established, 2 Locks and the test identities created"

echo "==> helm install (default values, lockingMode best_effort)"
expect_allowed "helm install" helm install "$release" "$chart" -n "$ns" "${unpullable[@]}"
manifest=$(helm get manifest "$release" -n "$ns")
count=0
while read -r kind name namespace; do
  args=("$kind" "$name")
  [ -n "$namespace" ] && args+=(-n "$namespace")
  kubectl get "${args[@]}" >/dev/null 2>&1 || fail "$kind $name (${namespace:-cluster}) was not created"
  count=$((count + 1))
done < <(printf '%s\n' "$manifest" | awk '
  /^---/ { if (kind != "") print kind, name, ns; kind = ""; name = ""; ns = ""; meta = 0; next }
  /^kind:/ { kind = $2 }
  /^metadata:/ { meta = 1; next }
  meta && /^  name:/ { name = $2 }
  meta && /^  namespace:/ { ns = $2 }
  /^[a-z]/ && !/^metadata:/ { meta = 0 }
  END { if (kind != "") print kind, name, ns }')
[ "$count" -ge 15 ] || fail "only $count objects in the release manifest"
ok "all $count objects of the release exist"
[ "$(kubectl get deploy deadbolt-operator -n "$ns" -o jsonpath='{.spec.replicas}')" = 2 ] || fail "operator replicas"
ok "operator Deployment has 2 replicas ($(kubectl get pods -n "$ns" -l app.kubernetes.io/component=operator --no-headers 2>/dev/null | wc -l) pods, none can run: the image is unpullable)"

echo "==> RBAC as the API server sees it"
can_i yes "$operator_sa" get secrets/deadbolt-ca -n "$ns"
can_i no "$operator_sa" get secrets/other -n "$ns"
can_i no "$operator_sa" list secrets -n "$ns"
can_i yes "$operator_sa" create secrets -n "$ns"
can_i no "$operator_sa" get secrets/deadbolt-ca -n default
can_i yes "$operator_sa" patch leases.coordination.k8s.io/deadbolt-operator -n "$ns"
# Enforcement reports (deadbolt-enforcement-<pod>) are named after pods, so
# leases are patchable in the release namespace, and only there.
can_i yes "$operator_sa" patch leases.coordination.k8s.io/deadbolt-enforcement-any -n "$ns"
can_i no "$operator_sa" patch leases.coordination.k8s.io/kube-scheduler -n kube-system
can_i yes "$operator_sa" create leases.coordination.k8s.io -n "$ns"
# Failed MFA checks, one Lease per user shared by the replicas: read with a
# list selected by name, patched, deleted when a check passes.
can_i yes "$operator_sa" list leases.coordination.k8s.io -n "$ns"
can_i yes "$operator_sa" delete leases.coordination.k8s.io/deadbolt-mfa-lockout-any -n "$ns"
can_i no "$operator_sa" delete leases.coordination.k8s.io/kube-controller-manager -n kube-system
can_i yes "$operator_sa" get serviceaccounts/deadbolt-operator -n "$ns"
can_i no "$operator_sa" get serviceaccounts/default -n "$ns"
can_i yes "$operator_sa" create events.events.k8s.io -n default
can_i no "$operator_sa" create events.events.k8s.io -n kube-system
can_i yes "$operator_sa" patch validatingwebhookconfigurations/deadbolt-validating
can_i yes "$operator_sa" get mutatingwebhookconfigurations/deadbolt-mutating
can_i no "$operator_sa" patch validatingwebhookconfigurations/someone-elses
can_i yes "$operator_sa" watch locks.deadbolt.dev
can_i yes "$operator_sa" patch locks.deadbolt.dev/x --subresource=status
can_i no "$operator_sa" update locks.deadbolt.dev
can_i yes "$operator_sa" delete users.deadbolt.dev
can_i no "$operator_sa" create users.deadbolt.dev
can_i yes "$operator_sa" create tokenreviews.authentication.k8s.io
can_i no "$operator_sa" create deployments.apps -n "$ns"
# Aggregation is done by the controller manager; give it a moment.
for _ in $(seq 1 30); do
  [ "$(kubectl auth can-i list locks.deadbolt.dev --as=viewer@example.com 2>/dev/null)" = yes ] && break
  sleep 1
done
can_i yes viewer@example.com list locks.deadbolt.dev
can_i yes viewer@example.com get clusterauthpreferences.deadbolt.dev
can_i no viewer@example.com create locks.deadbolt.dev
can_i no viewer@example.com get secrets/deadbolt-ca -n "$ns"
can_i yes admin-user@example.com create locks.deadbolt.dev
can_i yes admin-user@example.com delete locks.deadbolt.dev

echo "==> webhooks with no operator answering (best_effort: enforcement Ignore, validation and mutation Fail)"
expect_allowed "a write by a user passes (enforcement Ignore)" \
  kubectl create configmap written-by-someone -n "$ns" --as=someone@example.com
expect_refused "a new Lock is refused (mutation Fail)" 'mutate-locks.deadbolt.dev' \
  kubectl create -f - <<<'{"apiVersion":"deadbolt.dev/v1","kind":"Lock","metadata":{"name":"during-outage"},"spec":{"target":{"user":"eve"}}}'
expect_allowed "deleting a Lock is never blocked (unlocking)" kubectl delete lock before-install-1
expect_refused "a pod asking for injection is refused (mutation Fail)" 'inject.deadbolt.dev' \
  kubectl create -n "$ns" -f - <<<'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"wants-sidecar","annotations":{"deadbolt.dev/inject":"postgres"}},"spec":{"containers":[{"name":"c","image":"example.invalid/c:1"}]}}'
expect_allowed "a pod without the annotation is not sent to injection" \
  kubectl create -n "$ns" -f - <<<'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"plain-pod"},"spec":{"containers":[{"name":"c","image":"example.invalid/c:1"}]}}'
kubectl delete pod plain-pod -n "$ns" --wait=false >/dev/null

echo "==> helm upgrade to lockingMode strict (enforcement Fail) with the chart's ClusterAuthPreference"
expect_allowed "helm upgrade (Helm's release record and the chart's objects are exempt during install)" \
  helm upgrade "$release" "$chart" -n "$ns" --set lockingMode=strict --set clusterAuthPreference.create=true "${unpullable[@]}"
[ "$(kubectl get validatingwebhookconfiguration deadbolt-validating -o jsonpath='{.webhooks[?(@.name=="enforce-locks.deadbolt.dev")].failurePolicy}')" = Fail ] \
  || fail "enforcement failurePolicy is not Fail after the upgrade"
ok "enforcement failurePolicy is Fail"
[ "$(kubectl get clusterauthpreference cluster-auth-preference -o jsonpath='{.spec.lockingMode}')" = strict ] || fail "ClusterAuthPreference"
ok "ClusterAuthPreference cluster-auth-preference was created with lockingMode strict"
expect_refused "a write by a user is refused while no operator answers" 'enforce-locks.deadbolt.dev' \
  kubectl create configmap refused -n "$ns" --as=someone@example.com
expect_refused "so is the admin's unlock (strict: fail closed)" 'enforce-locks.deadbolt.dev' \
  kubectl delete lock before-install-2
expect_allowed "control-plane users are not sent to the webhook" \
  kubectl create configmap by-component -n "$ns" --as=system:deadbolt-test-component
expect_allowed "the operator's ServiceAccount is not sent to the webhook" \
  kubectl create configmap by-operator -n "$ns" --as="$operator_sa"
expect_allowed "kube-system service accounts are not sent to the webhook" \
  kubectl create configmap by-kube-system -n "$ns" --as=system:serviceaccount:kube-system:replicaset-controller \
  --as-group=system:serviceaccounts:kube-system --as-group=system:serviceaccounts --as-group=system:authenticated

echo "==> helm uninstall"
if helm version --short | grep -q '^v3\.'; then
  # Helm 3 deletes webhook configurations last, after the operator's Service:
  # in strict mode every deletion in between is refused (docs/install.md).
  expect_allowed "deleting the validating webhook configuration first, as docs/install.md says" \
    kubectl delete validatingwebhookconfiguration deadbolt-validating
fi
expect_allowed "helm uninstall" helm uninstall "$release" -n "$ns" --wait --timeout 120s
# The Deployment's pods go by garbage collection, after helm has returned.
kubectl wait --for=delete pod -l app.kubernetes.io/part-of=deadbolt -n "$ns" --timeout=120s >/dev/null 2>&1 || true
left=$(kubectl get clusterrole,clusterrolebinding,validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterauthpreference \
  -l app.kubernetes.io/part-of=deadbolt -o name 2>/dev/null; \
  kubectl get all,sa,role,rolebinding,pdb,networkpolicy,secret,configmap -A -l app.kubernetes.io/part-of=deadbolt -o name 2>/dev/null; \
  kubectl get secret -n "$ns" -o name | grep 'sh.helm.release' || true)
[ -z "$left" ] || fail "left after uninstall: $left"
kubectl get role,rolebinding deadbolt-operator-events -n default >/dev/null 2>&1 && fail "the events Role in default was left"
for crd in locks users accessroles clusterauthpreferences mfadevices; do
  kubectl get crd "$crd.deadbolt.dev" >/dev/null || fail "CRD $crd.deadbolt.dev was removed"
done
ok "uninstall left only the 5 CRDs"
expect_allowed "with no webhooks left the Lock can be deleted" kubectl delete lock before-install-2

echo "==> the kube-API proxy (ci/kube-proxy-values.yaml)"
expect_allowed "helm install -f ci/kube-proxy-values.yaml" \
  helm install "$release" "$chart" -n "$ns" -f "$chart/ci/kube-proxy-values.yaml" "${unpullable[@]}"
for object in deployment/deadbolt-kube-proxy service/deadbolt-kube-proxy serviceaccount/deadbolt-kube-proxy pdb/deadbolt-kube-proxy; do
  kubectl get -n "$ns" "$object" >/dev/null || fail "$object missing"
done
ok "kube proxy Deployment, Service, ServiceAccount and PodDisruptionBudget exist"
kubectl get deploy deadbolt-operator -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- "--subscriber=$ns/deadbolt-kube-proxy=kube-api" \
  || fail "the operator does not accept the kube proxy as a subscriber"
ok "the operator accepts $ns/deadbolt-kube-proxy=kube-api as a subscriber"
sar yes "$proxy_sa" "" users "" impersonate
sar yes "$proxy_sa" "" groups "" impersonate
sar yes "$proxy_sa" "" serviceaccounts "" impersonate default
for extra in session-id mfa-device device access-request; do
  sar yes "$proxy_sa" authentication.k8s.io userextras "deadbolt.dev/$extra" impersonate
done
sar no "$proxy_sa" authentication.k8s.io userextras scopes impersonate
sar no "$proxy_sa" authentication.k8s.io uids "" impersonate
sar no "$operator_sa" "" users "" impersonate
can_i yes "$proxy_sa" create tokenreviews.authentication.k8s.io
can_i no "$proxy_sa" get secrets/deadbolt-ca -n "$ns"
can_i no "$proxy_sa" list pods -n "$ns"
expect_allowed "helm uninstall" helm uninstall "$release" -n "$ns" --wait --timeout 120s

echo "==> GitOps locks validate against the CRDs (server-side dry run)"
expect_allowed "kubectl apply --dry-run=server -k examples/gitops/locks" \
  kubectl apply --dry-run=server -k examples/gitops/locks

echo "chart-server: $passed checks passed"
