#!/bin/sh
# The longest prompt a prefill completes under a hard per-process memory limit, measured:
# every process (each rank under mpirun) runs in a memory cgroup of its own with LIMIT
# (scripts/in-memory-limit.sh), and a run counts only if it ends normally. The search
# starts at what `prefill --fit --max-memory LIMIT` picks from the estimate (a run too),
# then grows N by STEP percent until the kernel kills a run; the last N that completed is
# the answer (within STEP percent).
#
#   scripts/sp-longest-under-limit.sh MODEL LIMIT "1 2 4" [SCHEME] [STEP]
#
# P = 1 is the single pipeline with every core; P > 1 runs mpirun -np P with CORES/P
# threads per rank (at least 1). Prints a Markdown table with each P's longest N and its
# ratio to the single pipeline's. TANDEM (default build/bin/tandem) names the program.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 MODEL LIMIT \"P1 P2 ...\" [SCHEME] [STEP_PERCENT]" >&2
  exit 2
fi
model=$1 limit=$2 ranks=$3 scheme=${4:-zigzag} step=${5:-4}
here=$(cd "$(dirname "$0")" && pwd)
tandem=${TANDEM:-build/bin/tandem}
wrap="$here/in-memory-limit.sh $limit"
cores=$(nproc)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
launch() {  # P: the command prefix
  if [ "$1" -eq 1 ]; then echo "$wrap $tandem"
  else echo "mpirun --allow-run-as-root --oversubscribe --bind-to none -np $1 $wrap $tandem"; fi
}
echo "| run | limit per process | longest N completed | first N killed | vs single | --fit picked |"
echo "|---|---|---|---|---|---|"
single=
for p in $ranks; do
  t=$(( cores / p )); [ "$t" -lt 1 ] && t=1
  sp=""; [ "$p" -gt 1 ] && sp="--sp $scheme"
  # shellcheck disable=SC2046
  if ! $(launch "$p") prefill -m "$model" --fit --max-memory "$limit" -t "$t" $sp > "$log" 2>&1; then
    echo "P=$p: prefill --fit did not complete under $limit:" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  fit=$(grep -o '"tokens": *[0-9]*' "$log" | head -1 | grep -o '[0-9]*$' || true)
  [ -z "$fit" ] && fit=$(sed -n 's/.*prefill of \([0-9]*\) tokens.*/\1/p' "$log" | head -1)
  if [ -z "$fit" ]; then echo "P=$p: cannot read the fitted N from:" >&2; tail -5 "$log" >&2; exit 1; fi
  ok=$fit killed=
  n=$fit
  while :; do
    n=$(( n + n * step / 100 ))
    echo "P=$p: trying N=$n" >&2
    if $(launch "$p") prefill -m "$model" --random-tokens "$n" -t "$t" $sp > "$log" 2>&1; then
      ok=$n
    else
      if grep -q "killed" "$log"; then killed=$n; break; fi
      echo "P=$p N=$n failed, not by the limit:" >&2; tail -5 "$log" >&2; exit 1
    fi
  done
  label="single, 1 x $cores threads"; [ "$p" -gt 1 ] && label="$scheme, P = $p"
  [ -z "$single" ] && [ "$p" -eq 1 ] && single=$ok
  ratio=$( [ -n "$single" ] && python3 -c "print(f'{$ok / $single:.2f}')" || echo "-")
  echo "| $label | $limit | $ok | $killed | $ratio | $fit |"
done
