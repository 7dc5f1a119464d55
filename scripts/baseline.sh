#!/usr/bin/env bash
# First speed baseline of the single pipeline: prompt (prefill) and generation
# tokens/s for a model at the given thread counts. Usage:
#   scripts/baseline.sh MODEL [PROMPT_TOKENS=512] [GEN_TOKENS=128] [THREADS="1 2"] [REPEATS=3]
# Prints one line per run; quote the medians.
set -euo pipefail
model=$1
np=${2:-512}
ng=${3:-128}
threads=${4:-"1 2"}
reps=${5:-3}
bin=${TANDEM:-build/bin/tandem}
ids=$(seq -s, 100 $((100 + np - 1)))
for t in $threads; do
  for r in $(seq "$reps"); do
    out=$("$bin" generate -m "$model" --ids "$ids" -n "$ng" --temp 0 -t "$t" --show-ids 2>&1 >/dev/null)
    pp=$(grep -o 'prompt: .*' <<<"$out" | sed -E 's/.*\(([0-9.]+) tokens\/s\).*/\1/')
    tg=$(grep -o 'generation: .*' <<<"$out" | sed -E 's/.*tokens, ([0-9.]+) tokens\/s.*/\1/')
    echo "model=$(basename "$model") threads=$t rep=$r pp$np=$pp tok/s tg$ng=$tg tok/s"
  done
done
