#!/usr/bin/env bash
# Are two tandem builds bit-identical on the shipped models? For refactors that must change
# no result.
#
#   scripts/logits-identical.sh OLD_TANDEM NEW_TANDEM
#
# Runs both on ../shared/models/{tiny-f16,tiny-q4_0-pure}.gguf: the logits of every position
# of a 200-token prompt (local with the default, 16-token and contiguous KV pages, a Q8_0 KV
# cache and --no-flash-attn; ring, zigzag, ulysses, pass-q and auto on 2 in-process ranks,
# hybrid:2x2 on 4, ring on 3) and 24-token generations (greedy under local, ring, zigzag,
# hybrid and pass-q; sampled under local and ring); compares the files byte for byte.
# Exit 0 when every file is identical. About a minute.
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $# == 2 && -x $1 && -x $2 ]] || { echo "usage: $0 OLD_TANDEM NEW_TANDEM" >&2; exit 2; }
MODELS=${TANDEM_SHARED:-../shared}/models
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

capture() {  # binary outdir
  local bin=$1 out=$2 f
  mkdir -p "$out"
  for model in tiny-f16 tiny-q4_0-pure; do
    f=$MODELS/$model.gguf
    run() { local name=$1; shift
      "$bin" logits -m "$f" --random-tokens 200 --seed 7 --out "$out/$model-$name.bin" -t 1 "$@" \
        >"$out/$model-$name.txt" 2>/dev/null || echo "$bin: logits $model $name failed" >&2; }
    run local; run local-page16 --kv-page 16; run local-page0 --kv-page 0
    run local-q8kv --kv-type q8_0; run local-noflash --no-flash-attn
    for s in ring zigzag ulysses pass-q auto; do run "sp-$s" --sp "$s" --ranks 2; done
    run sp-hybrid --sp hybrid:2x2 --ranks 4; run sp-ring3 --sp ring --ranks 3
    gen() { local name=$1; shift
      "$bin" generate -m "$f" -p "Once upon a time" -n 24 --show-ids -t 1 "$@" \
        >"$out/$model-gen-$name.txt" 2>/dev/null || echo "$bin: generate $model $name failed" >&2; }
    gen local --temp 0; gen ring --sp ring --ranks 2 --temp 0; gen zigzag --sp zigzag --ranks 2 --temp 0
    gen hybrid --sp hybrid:2x2 --ranks 4 --temp 0; gen passq --sp pass-q --ranks 3 --temp 0
    gen sample --temp 0.8 --seed 5; gen sample-ring --sp ring --ranks 2 --temp 0.8 --seed 5
  done
}
capture "$1" "$WORK/old"
capture "$2" "$WORK/new"
differ=0 n=0
for a in "$WORK"/old/*; do
  n=$((n + 1))
  cmp -s "$a" "$WORK/new/$(basename "$a")" || { echo "differs: $(basename "$a")"; differ=$((differ + 1)); }
done
echo "$((n - differ)) of $n files identical"
[[ $differ == 0 ]]
