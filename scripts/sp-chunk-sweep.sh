#!/bin/sh
# The --sp-chunk choice measured: one sequence-parallel prefill at several chunk sizes
# (tokens per rank per step; 0 = the whole shard in one step), rounds alternating the
# settings so that machine noise falls on all of them alike. Per setting, the median
# over rounds of prefill seconds, and from the last round the bytes the busiest rank
# sent, its wait on communication, the hidden fraction and its peak RSS.
#
#   scripts/sp-chunk-sweep.sh MODEL N P SCHEME "256 512 1024 2048 0" [ROUNDS] [EXTRA FLAGS...]
#
# TANDEM (default build/bin/tandem) names the program; OLD_TANDEM, when set, adds a row
# for another build of tandem run the same way without --sp-chunk (an A/B against it).
set -eu
if [ $# -lt 5 ]; then
  echo "usage: $0 MODEL N P SCHEME \"CHUNKS\" [ROUNDS] [EXTRA FLAGS...]" >&2
  exit 2
fi
model=$1 n=$2 p=$3 scheme=$4 chunks=$5
shift 5
rounds=${1:-3}
[ $# -gt 0 ] && shift
tandem=${TANDEM:-build/bin/tandem}
cores=$(nproc)
t=$(( cores / p )); [ "$t" -lt 1 ] && t=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
settings=$chunks
[ -n "${OLD_TANDEM:-}" ] && settings="$settings old"
r=1
while [ "$r" -le "$rounds" ]; do
  for c in $settings; do
    if [ "$c" = old ]; then
      cmd="$OLD_TANDEM prefill -m $model --random-tokens $n -t $t --sp $scheme --json $*"
    else
      cmd="$tandem prefill -m $model --random-tokens $n -t $t --sp $scheme --sp-chunk $c --json $*"
    fi
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$p" $cmd > "$out/$c.$r.json" 2> "$out/err" ||
      { cat "$out/err" >&2; exit 1; }
    echo "round $r chunk $c done" >&2
  done
  r=$((r + 1))
done
python3 - "$out" "$rounds" $settings <<'EOF'
import json, statistics, sys
d, rounds, settings = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
M = 2 ** 20
def load(path):
    t = open(path).read()
    return json.loads(t[t.index('{'):])
print("| --sp-chunk | prefill s (median) | all rounds | sent MiB (busiest rank) | comm wait s | hidden | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for c in settings:
    runs = [load(f"{d}/{c}.{r}.json") for r in range(1, rounds + 1)]
    secs = [j["seconds"] for j in runs]
    last = runs[-1]["per_rank"]
    busy = max(last, key=lambda x: x["bytes_sent"])
    peak = max(x["peak_rss_bytes"] for x in last)
    label = "old build" if c == "old" else ("0 (whole shard)" if c == "0" else c)
    print(f"| {label} | {statistics.median(secs):.2f} | {' '.join(f'{s:.2f}' for s in secs)} | "
          f"{busy['bytes_sent'] / M:.0f} | {busy['comm_wait_seconds']:.2f} | "
          f"{busy['comm_hidden_fraction']:.2f} | {peak / M:.1f} |")
EOF
