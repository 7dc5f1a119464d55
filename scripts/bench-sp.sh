#!/usr/bin/env bash
# Sequence-parallel prefill benchmarks (issue 4): for each model and length, 1 rank x 2
# threads, 1 rank x 1 thread, and P ranks x 1 thread per scheme (under mpirun);
# parallel efficiency T1 / (P x TP) at one thread per rank; per-rank KV + activation
# memory against the same scheme on 1 rank; the longest prompt that fits a fixed
# --max-memory at P = 1, 2, 4.
# Usage: scripts/bench-sp.sh [MODELS="tiny small"] [LENGTHS="2048 8192"] [SCHEMES="ring zigzag ulysses pass-q"] [P=2] [BUDGET=256M]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TANDEM:-build/bin/tandem}
models=${1:-"tiny small"}
lengths=${2:-"2048 8192"}
schemes=${3:-"ring zigzag ulysses pass-q"}
P=${4:-2}
budget=${5:-256M}
dir=${TANDEM_BENCH_DIR:-/tmp/tandem-bench}
mkdir -p "$dir"
mpi="mpirun --allow-run-as-root --oversubscribe --bind-to none"
vocab=../shared/vocab/ggml-vocab-llama-spm.gguf

field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "# $(date -u) $(uptime)"
for m in $models; do
  model=$dir/$m-f32.gguf
  [ -f "$model" ] || "$bin" make-model --preset "$m" --type f32 --vocab "$vocab" -o "$model" >/dev/null 2>&1
  for n in $lengths; do
    t12=$("$bin" prefill -m "$model" --random-tokens "$n" -t 2 --json | field 'd["seconds"]')
    t11=$("$bin" prefill -m "$model" --random-tokens "$n" -t 1 --json | field 'd["seconds"]')
    echo "model=$m N=$n 1x2=${t12}s 1x1=${t11}s"
    for s in $schemes; do
      one=$("$bin" prefill -m "$model" --random-tokens "$n" -t 1 --sp "$s" --json)
      par=$($mpi -np "$P" "$bin" prefill -m "$model" --random-tokens "$n" -t 1 --sp "$s" --json)
      python3 - "$m" "$n" "$s" "$P" "$t11" <<PY
import json, sys
m, n, s, P, t11 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
one = json.loads('''$one'''); par = json.loads('''$par''')
tp = par["seconds"]
mem1 = sum(r["kv_bytes"] + r["activation_bytes"] for r in one["per_rank"])
memp = max(r["kv_bytes"] + r["activation_bytes"] for r in par["per_rank"])
hidden = min(r["comm_hidden_fraction"] for r in par["per_rank"])
sent = max(r["bytes_sent"] for r in par["per_rank"]) / 2**20
print(f"  {s:8s} P={P}x1: {tp:.3f}s  efficiency T1/(P*TP)={t11/(P*tp):.2f}  speedup vs 1x2={float('$t12')/tp:.2f}"
      f"  KV+act/rank={memp/2**20:.1f} MiB vs 1 rank {mem1/2**20:.1f} MiB (ratio {memp/mem1:.3f}, 1/P={1/P:.3f})"
      f"  sent/rank={sent:.1f} MiB  hidden>={hidden:.0%}")
PY
    done
  done
  for p in 1 2 4; do
    out=$($mpi -np "$p" "$bin" prefill -m "$model" --fit --max-memory "$budget" --sp zigzag -t 1 --json)
    echo "model=$m budget=$budget P=$p largest N=$(field 'd["tokens"]' <<<"$out")"
  done
done
