#!/usr/bin/env bash
# The benches' arithmetic, checked without running a bench: medians,
# same-round ratios and their spread (scripts/bench-lib.sh), and the rounds
# of the database benches' paths (scripts/bench-db-lib.sh) over a fake `run`.
# A wrong median would print a plausible table, so it is checked here. Run by
# scripts/test.sh; starts nothing and takes no lock.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export DEADBOLT_BENCH_LOCKED=1 # nothing is measured: no need to wait for a bench
export ROUNDS=3
# shellcheck source=scripts/bench-db-lib.sh
. "$repo/scripts/bench-db-lib.sh"

failures=0
expect() { # expect WHAT ACTUAL EXPECTED
  if [ "$2" = "$3" ]; then
    echo "ok   $1"
  else
    echo "FAIL $1: got '$2', expected '$3'"
    failures=$((failures + 1))
  fi
}

expect "median of an odd count" "$(median 3 1 2)" 2
expect "median of an even count" "$(median 4 1 3 2)" 2.5
expect "median sorts numerically" "$(median 9 10 100)" 10
expect "ratios in percent, round by round" "$(ratios "2 3 5" "1 2 10" | paste -sd' ')" "200.00 150.00 50.00"
expect "ratios with a scale" "$(ratios "1 3" "2 4" 1 | paste -sd' ')" "0.50 0.75"
expect "spread: median (min–max)" "$(spread %.1f 3 1 2)" "2.0 (1.0–3.0)"

# A fake `run PATH CLIENTS` (as bench-postgres.sh and bench-mysql.sh define
# it): "rate proxy_cpu server_cpu", different for each path and round.
calls=$(mktemp)
trap 'rm -f "$calls"' EXIT
run() {
  local n
  n=$(wc -l <"$calls")
  echo "$1" >>"$calls"
  case $1 in
    direct) echo "$((100 * (n / 2 + 1))) 0 $((n + 1))" ;;
    proxy) echo "$((90 * (n / 2 + 1))) 7 $((n + 1))" ;;
  esac
}
rounds_of 16 direct proxy
expect "paths take turns within a round" "$(paste -sd' ' "$calls")" "direct proxy direct proxy direct proxy"
expect "rates by path, round by round" "$(values rate direct) / $(values rate proxy)" "100 200 300 / 90 180 270"
expect "median of a path's rates" "$(median_of rate proxy)" 180
expect "median of a path's CPU" "$(median_of cpu proxy)" 7
expect "server CPU by path" "$(values server direct)" "1 3 5"
expect "versus: same-round ratios in percent" "$(versus proxy direct)" "90.0% (90.0%–90.0%)"

if [ "$failures" -gt 0 ]; then
  echo "test-bench-lib: $failures checks failed"
  exit 1
fi
echo "test-bench-lib: all checks passed"
