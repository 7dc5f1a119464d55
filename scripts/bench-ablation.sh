#!/usr/bin/env bash
# The ablation of issue 3: what each sequential optimization buys on the small synthetic
# model, F32 and Q8_0 (and any other type given), one `tandem bench --ablation` table each.
#
#   scripts/bench-ablation.sh [TYPE...]        (default: f32 q8_0)
#
# The models are made with `tandem make-model --preset small` (vocab
# ggml-vocab-llama-spm.gguf) in the same cache folder as scripts/bench-targets.sh.
# The all-off configuration runs the scalar reference kernels and recomputes the whole
# sequence for each generated token, so the workload is short by default.
#
# Environment:
#   TANDEM      tandem binary (default build/bin/tandem)
#   MODELS_DIR  where the models go (default ${XDG_CACHE_HOME:-~/.cache}/tandem/bench-models)
#   VOCAB       vocabulary GGUF (default ../shared/vocab/ggml-vocab-llama-spm.gguf)
#   THREADS     threads (default 2)
#   PROMPT GEN  prompt and generated tokens (default 64 and 8)
#   REPEATS     interleaved repeats (default 3)
#   JSON_DIR    also write each table as JSON here when set
set -euo pipefail
cd "$(dirname "$0")/.."

TANDEM=${TANDEM:-build/bin/tandem}
MODELS_DIR=${MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/bench-models}
VOCAB=${VOCAB:-../shared/vocab/ggml-vocab-llama-spm.gguf}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-64}
GEN=${GEN:-8}
REPEATS=${REPEATS:-3}
TYPES=("$@")
[[ ${#TYPES[@]} -gt 0 ]] || TYPES=(f32 q8_0)

[[ -x $TANDEM ]] || { echo "bench-ablation: $TANDEM not found; build it or set TANDEM" >&2; exit 2; }
[[ -f $VOCAB ]] || { echo "bench-ablation: vocab $VOCAB not found; set VOCAB" >&2; exit 2; }
mkdir -p "$MODELS_DIR"
for t in "${TYPES[@]}"; do
  model="$MODELS_DIR/small-$t.gguf"
  if [[ ! -f $model ]]; then
    echo "bench-ablation: making $model" >&2
    "$TANDEM" make-model --preset small --type "$t" --vocab "$VOCAB" -o "$model" >/dev/null
  fi
  echo "== small $t: uptime $(uptime | sed 's/.*load average/load average/')"
  "$TANDEM" bench --ablation -m "$model" -p "$PROMPT" -n "$GEN" -r "$REPEATS" -t "$THREADS"
  if [[ -n ${JSON_DIR:-} ]]; then
    mkdir -p "$JSON_DIR"
    "$TANDEM" bench --ablation --json -m "$model" -p "$PROMPT" -n "$GEN" -r "$REPEATS" \
      -t "$THREADS" >"$JSON_DIR/ablation-small-$t.json"
  fi
  echo
done
