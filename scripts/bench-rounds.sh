# shellcheck shell=bash
# What every bench script shares to measure in rounds: each case is measured
# ROUNDS times (default 3), the paths taking turns within a round, so a slow
# spell of a shared machine lands on every path alike. The tables print each
# path's median and the median (and range) of the ratios of paths measured in
# the same round. Sourced by bench-postgres.sh, bench-mysql.sh and
# bench-kube-api.sh.

rounds=${ROUNDS:-3}
case $rounds in
  '' | *[!0-9]* | 0) echo "ROUNDS must be a positive number, not ${rounds}" >&2; exit 2 ;;
esac

# median V...: the middle value (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratios A B: the per-round ratios A[i]/B[i] of two space-separated lists,
# times SCALE (default 100: percentages).
ratios() { awk -v a="$1" -v b="$2" -v scale="${3:-100}" 'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%.2f\n", scale * x[i] / y[i] }'; }

# spread FORMAT V...: "median (min–max)" of the values, each printed with FORMAT.
spread() {
  local format=$1 sorted; shift
  sorted=$(printf '%s\n' "$@" | sort -g)
  # shellcheck disable=SC2059 # the format is the caller's
  printf "$format ($format–$format)" "$(median "$@")" "$(head -n 1 <<<"$sorted")" "$(tail -n 1 <<<"$sorted")"
}
