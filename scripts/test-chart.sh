#!/usr/bin/env bash
# Checks the Helm chart without a cluster: helm lint and helm template with the
# default values and each charts/deadbolt/ci/*-values.yaml, the chart's crds/
# against the top-level crds/ (byte for byte), the rendered manifests
# (charts/deadbolt/tests/check_rendered.py: RBAC, webhooks, security contexts,
# optional parts), the Argo CD health checks (lua5.4, and lua5.1 when present),
# the argocd-cm patch against those scripts, and the GitOps kustomizations.
# scripts/test-chart-server.sh does the server-side part.
#
# Needs helm and kubectl on PATH or in .tools/bin (scripts/install-tools.sh),
# python3 with PyYAML and lua5.4; installs the last two from Debian when missing
# and running as root.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
chart=$repo/charts/deadbolt
cd "$repo"
export PATH="$repo/.tools/bin:$PATH"

# shellcheck source=scripts/debs.sh
. "$repo/scripts/debs.sh"

for tool in helm kubectl; do
  command -v "$tool" >/dev/null || { echo "test-chart: $tool not found on PATH or in .tools/bin; run scripts/install-tools.sh" >&2; exit 1; }
done

# PyYAML reads helm's output (helm has no JSON output, and kubectl cannot convert
# kinds it does not know without a cluster). Debian ships it as python3-yaml.
python=
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import yaml' 2>/dev/null; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  install_debs python3-yaml || python3 -m pip install -q --user pyyaml
  for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import yaml' 2>/dev/null; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "test-chart: no python3 with PyYAML" >&2; exit 1; }
command -v lua5.4 >/dev/null || install_debs lua5.4
command -v lua5.4 >/dev/null || { echo "test-chart: lua5.4 is needed (apt-get install lua5.4)" >&2; exit 1; }

echo "==> $(helm version --short 2>/dev/null), kubectl $(kubectl version --client -o json 2>/dev/null | "$python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"

echo "==> chart CRDs equal crds/ byte for byte"
top=$(cd crds && ls -- *.yaml)
mine=$(cd "$chart/crds" && ls -- *.yaml)
if [ "$top" != "$mine" ]; then
  echo "charts/deadbolt/crds/ and crds/ hold different files:" >&2
  diff <(echo "$top") <(echo "$mine") >&2 || true
  echo "fix: rm charts/deadbolt/crds/*.yaml && cp crds/*.yaml charts/deadbolt/crds/" >&2
  exit 1
fi
for f in $top; do
  cmp -s "crds/$f" "$chart/crds/$f" || { echo "charts/deadbolt/crds/$f differs from crds/$f; fix: cp crds/*.yaml charts/deadbolt/crds/" >&2; exit 1; }
done
echo "$(echo "$top" | wc -l) CRDs identical"

values_sets=("" "$chart"/ci/*-values.yaml)
label() { if [ -n "$1" ]; then echo "${1#"$repo"/}"; else echo "default values"; fi; }
echo "==> helm lint --strict"
for values in "${values_sets[@]}"; do
  helm lint --strict "$chart" ${values:+-f "$values"} >/dev/null || { helm lint --strict "$chart" ${values:+-f "$values"}; exit 1; }
  echo "ok   lint $(label "$values")"
done

echo "==> helm template (Kubernetes 1.28 and 1.33)"
for values in "${values_sets[@]}"; do
  for kube in 1.28.0 1.33.0; do
    out=$(helm template deadbolt "$chart" --namespace deadbolt-system --kube-version "$kube" ${values:+-f "$values"})
    kinds=$(printf '%s\n' "$out" | grep -c '^kind:' || true)
  done
  echo "ok   template $(label "$values"): $kinds objects"
done
if helm template deadbolt "$chart" --kube-version 1.27.0 >/dev/null 2>&1; then
  echo "the chart should refuse Kubernetes 1.27 (matchConditions need 1.28)" >&2; exit 1
fi
echo "ok   template refuses Kubernetes 1.27"
for bad in "webhooks.failurePolicy.enforcement=Sometimes" "image.pullPolicy=Maybe" "lockingMode=paranoid" "nonsense=1"; do
  if helm template deadbolt "$chart" --set "$bad" >/dev/null 2>&1; then
    echo "values.schema.json accepted --set $bad" >&2; exit 1
  fi
done
echo "ok   values.schema.json rejects bad enums and unknown keys"

echo "==> rendered manifests (charts/deadbolt/tests/check_rendered.py)"
"$python" "$chart/tests/check_rendered.py" --helm "$(command -v helm)" --chart "$chart"

echo "==> Argo CD health checks"
lua5.4 "$chart/argocd/test.lua" | tail -1
if command -v lua5.1 >/dev/null; then lua5.1 "$chart/argocd/test.lua" | tail -1; fi
"$python" - "$repo" <<'PY'
import sys, yaml
repo = sys.argv[1]
cm = yaml.safe_load(open(repo + "/examples/gitops/argocd/argocd-cm-health.yaml"))
want = open(repo + "/charts/deadbolt/argocd/health.lua").read()
for kind in ("Lock", "User", "ClusterAuthPreference"):
    key = "resource.customizations.health.deadbolt.dev_" + kind
    if cm["data"].get(key) != want:
        sys.exit("examples/gitops/argocd/argocd-cm-health.yaml: %s differs from charts/deadbolt/argocd/health.lua" % key)
print("ok   argocd-cm-health.yaml carries health.lua unchanged under the three keys")
PY

echo "==> GitOps examples"
"$python" - "$repo" <<'PY'
import glob, os, sys, yaml
repo = sys.argv[1]
want = {
    "Application": "argoproj.io/v1alpha1", "ConfigMap": "v1", "GitRepository": "source.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2", "Lock": "deadbolt.dev/v1",
    "Kustomization": ("kustomize.toolkit.fluxcd.io/v1", "kustomize.config.k8s.io/v1beta1"),
}
count = 0
for path in sorted(glob.glob(repo + "/examples/gitops/**/*.yaml", recursive=True)):
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        kind, api = doc.get("kind"), doc.get("apiVersion")
        ok = want.get(kind)
        if ok is None or api not in (ok if isinstance(ok, tuple) else (ok,)):
            sys.exit("%s: unexpected %s %s" % (os.path.relpath(path, repo), api, kind))
        if kind == "HelmRelease":
            spec = doc["spec"]
            assert spec["chart"]["spec"]["chart"] == "./charts/deadbolt", path
            assert spec.get("storageNamespace") == spec.get("targetNamespace"), path + ": storageNamespace"
        if kind == "Application" and doc["spec"]["source"]["path"] == "charts/deadbolt":
            assert doc["spec"]["destination"]["namespace"] == "deadbolt-system", path
        count += 1
print("ok   %d GitOps objects parse, with the expected kinds and API versions" % count)
PY
for dir in examples/gitops/locks examples/gitops/flux examples/gitops/flux/release; do
  n=$(kubectl kustomize "$dir" | grep -c '^kind:')
  echo "ok   kubectl kustomize $dir: $n objects"
done
# The GitOps Application's values must pass the chart's schema.
"$python" -c 'import sys,yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"]["source"]["helm"]["valuesObject"], open(sys.argv[2], "w"))' \
  examples/gitops/argocd/application.yaml "${TMPDIR:-/tmp}/deadbolt-argocd-values.$$.yaml"
"$python" -c 'import sys,yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"]["values"], open(sys.argv[2], "w"))' \
  examples/gitops/flux/release/helmrelease.yaml "${TMPDIR:-/tmp}/deadbolt-flux-values.$$.yaml"
for v in argocd flux; do
  f="${TMPDIR:-/tmp}/deadbolt-$v-values.$$.yaml"
  helm template deadbolt "$chart" -n deadbolt-system -f "$f" >/dev/null || { rm -f "$f"; echo "the $v example's values fail the chart" >&2; exit 1; }
  rm -f "$f"
done
echo "ok   the Argo CD and Flux examples' values render"

echo "test-chart: all checks passed"
