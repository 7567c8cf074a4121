# shellcheck shell=bash
# Installing Debian's packages, one way for every script that needs some
# (install-tools.sh, test-chart.sh, the benches through bench-lib.sh).
# Sourced.

# as_root COMMAND...: as root, through sudo when not root (fails without it).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# install_debs PACKAGE...: installs them with apt-get, saying so (nothing
# without arguments), reading the package lists again only when the install
# fails without. The servers among them must not start system-wide
# instances, as the tests and benches start their own: a policy-rc.d forbids
# it for the install, and goes again after unless it was there before.
install_debs() {
  [ $# -gt 0 ] || return 0
  echo "==> apt-get install $* (Debian's packages)"
  export DEBIAN_FRONTEND=noninteractive
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  local status=0
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } \
    || status=$?
  if [ -n "$policy" ]; then as_root rm -f "$policy"; fi
  return "$status"
}
