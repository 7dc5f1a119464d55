#!/bin/sh
# Memory per rank of a sequence-parallel prefill against the single pipeline, measured
# per process (peak RSS, VmHWM), as issue tables show it:
#
#   scripts/sp-memory.sh MODEL N "1 2 4" [SCHEME] [EXTRA FLAGS...]
#
# P = 1 runs the single pipeline with every core (-t CORES); P > 1 runs mpirun -np P with
# CORES/P threads per rank (at least 1; past the core count the ranks share cores: the
# memory is what is measured, the time is then not a speed figure). For each run: the
# largest rank's peak RSS, the weights it copied, the rest (peak - weights), that rest as
# a fraction of the single pipeline's, and the breakdown of the largest rank. Output is
# a Markdown table. TANDEM (default build/bin/tandem) names the program.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 MODEL N \"P1 P2 ...\" [SCHEME] [EXTRA TANDEM FLAGS...]" >&2
  exit 2
fi
model=$1 n=$2 ranks=$3
shift 3
scheme=${1:-zigzag}
[ $# -gt 0 ] && shift
tandem=${TANDEM:-build/bin/tandem}
cores=$(nproc)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| run | N | threads/rank | peak RSS/rank MiB | weights MiB | peak - weights MiB | vs single | baseline | KV | activations | workspace | unaccounted | prefill s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
single_rest=
for p in $ranks; do
  t=$(( cores / p )); [ "$t" -lt 1 ] && t=1
  if [ "$p" -eq 1 ]; then
    "$tandem" prefill -m "$model" --random-tokens "$n" -t "$cores" --json "$@" > "$out/run.json" 2> "$out/err" || { cat "$out/err" >&2; exit 1; }
    label="single, 1 x $cores threads"; t=$cores
  else
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$p" "$tandem" prefill -m "$model" \
      --random-tokens "$n" -t "$t" --sp "$scheme" --json "$@" > "$out/run.json" 2> "$out/err" || { cat "$out/err" >&2; exit 1; }
    label="$scheme, P = $p"
  fi
  line=$(python3 - "$out/run.json" "$label" "$n" "$t" "${single_rest:-0}" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index('{'):])
M = 2 ** 20
big = max(j["per_rank"], key=lambda x: x["peak_rss_bytes"])
peak, w = big["peak_rss_bytes"] / M, big["weights_bytes"] / M
rest = peak - w
single = float(sys.argv[5])
ratio = f"{rest / single:.2f}" if single > 0 else "1.00"
print(f"{rest}||| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {peak:.1f} | {w:.1f} | {rest:.1f} | {ratio} | "
      f"{big['baseline_rss_bytes'] / M:.1f} | {big['kv_bytes'] / M:.1f} | {big['activation_bytes'] / M:.1f} | "
      f"{big['workspace_bytes'] / M:.1f} | {big['unaccounted_bytes'] / M:.1f} | {j['seconds']:.2f} |")
EOF
)
  [ -z "$single_rest" ] && [ "$p" -eq 1 ] && single_rest=${line%%||*}
  echo "${line#*||}"
done
