#!/usr/bin/env bash
# Trains the tiny preset from scratch on the passkey task with a context curriculum: each
# stage starts from the previous stage's checkpoint (-m) at a longer --ctx, with a fresh
# optimizer and warmup. Every stage evaluates held-out examples at its own context.
#   scripts/train_passkey.sh OUT_DIR [-t THREADS] [--tandem build/bin/tandem]
#   STAGES="64:32:600:1e-3 256:16:300:5e-4 512:8:400:5e-4" overrides the stages
#   (ctx:batch:steps:lr each).
#   SP_STAGE="2048:4:150:3e-4" adds a last stage under mpirun -np 2 --sp zigzag (each rank
#   holding half of every sequence, THREADS/2 threads each).
set -euo pipefail
out="${1:?usage: scripts/train_passkey.sh OUT_DIR [-t THREADS] [--tandem PATH]}"; shift
threads=2 tandem=build/bin/tandem
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads="$2"; shift 2 ;;
    --tandem) tandem="$2"; shift 2 ;;
    *) echo "train_passkey.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
stages="${STAGES:-64:32:600:1e-3 256:16:300:5e-4 512:8:400:5e-4}"
from=(--preset tiny)
i=0
for s in $stages; do
  IFS=: read -r ctx batch steps lr <<<"$s"
  i=$((i + 1))
  dir="$out/stage$i-ctx$ctx"
  echo "== stage $i: ctx $ctx, batch $batch, $steps steps, lr $lr -> $dir"
  "$tandem" train "${from[@]}" --task passkey --ctx "$ctx" --batch "$batch" --steps "$steps" \
    --lr "$lr" --warmup 50 --eval-every 100 --eval-examples 200 -t "$threads" -q \
    --out "$dir" --report "$dir"
  from=(-m "$dir/checkpoint.gguf")
done
if [ -n "${SP_STAGE:-}" ]; then
  IFS=: read -r ctx batch steps lr <<<"$SP_STAGE"
  dir="$out/stage$((i + 1))-zigzag2-ctx$ctx"
  echo "== stage $((i + 1)): 2 ranks, zigzag, ctx $ctx, batch $batch, $steps steps, lr $lr -> $dir"
  mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$tandem" train "${from[@]}" \
    --task passkey --ctx "$ctx" --batch "$batch" --steps "$steps" --lr "$lr" --warmup 20 \
    --eval-every 50 --eval-examples 100 -t $(( threads > 1 ? threads / 2 : 1 )) -q \
    --sp zigzag --out "$dir" --report "$dir"
fi
