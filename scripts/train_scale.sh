#!/usr/bin/env bash
# The longest context tandem train fits within a fixed memory per rank, at P = 1, 2 and 4
# (zigzag) with and without --checkpoint-layers, as --max-memory reports it (--dry-run),
# and the ratio to P = 1. With --measure, each configuration then trains one step at 64
# tokens less (the process's own resident set, part of the figure, varies by some KiB
# from run to run) and its measured peak resident set per rank is printed.
#   scripts/train_scale.sh [--budget 512M] [--measure] [--tandem build/bin/tandem]
set -euo pipefail
budget=512M measure=0 tandem=build/bin/tandem
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget="$2"; shift 2 ;;
    --measure) measure=1; shift ;;
    --tandem) tandem="$2"; shift 2 ;;
    *) echo "train_scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
launch() {  # P
  if [ "$1" = 1 ]; then echo "$tandem"; else
    echo "mpirun --allow-run-as-root --oversubscribe --bind-to none -np $1 $tandem"; fi
}
printf "%-14s %3s %10s %8s %14s\n" checkpointing P longest_ctx "x P=1" "peak RSS/rank"
for ck in "" "--checkpoint-layers"; do
  one=0
  for p in 1 2 4; do
    sp=""; [ "$p" -gt 1 ] && sp="--sp zigzag"
    args="train --preset tiny --task passkey --batch 1 -t 1 --max-memory $budget $ck $sp"
    out=$($(launch $p) $args --ctx 64 --dry-run 2>&1)
    n=$(grep -o "longest --ctx that fits is [0-9]*" <<<"$out" | head -1 | awk '{print $NF}')
    [ -n "$n" ] || { echo "$out" >&2; exit 1; }
    [ "$p" = 1 ] && one=$n
    rss="-"
    if [ "$measure" = 1 ]; then
      log=$(mktemp)
      $(launch $p) $args --ctx "$((n - 64))" --steps 1 --eval-examples 1 -q --log "$log" >/dev/null
      rss=$(python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).readline()); print('%.1f MiB' % (d['peak_rss']/2**20))" "$log")
      rm -f "$log"
    fi
    label=off; [ -n "$ck" ] && label=on
    printf "%-14s %3s %10s %8s %14s\n" "$label" "$p" "$n" \
      "$(python3 -c "print('%.2f' % ($n / $one))")" "$rss"
  done
done
