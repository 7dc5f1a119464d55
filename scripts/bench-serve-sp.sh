#!/usr/bin/env bash
# A prompt longer than one rank's KV pool, served by `mpirun -np P tandem serve --sp SCHEME`
# (every rank prefills it, decoding runs against the KV cache sharded across them), beside
# the same prompt on one process given a pool that holds it whole (the threads of all
# ranks together). Prints each one's time to first token and inter-token latency
# (`tandem bench-serve`, R requests one at a time, random token ids, greedy).
#
#   scripts/bench-serve-sp.sh MODEL.gguf
#
# Environment: TANDEM (build/bin/tandem), P (2 ranks), SCHEME (zigzag), THREADS (1 per
# rank), PROMPT (3000 tokens), MAX_TOKENS (16), R (3 requests), KV_POOL (48M per rank:
# 2048 tokens of the small preset's F32 KV), PORT (8281).
set -euo pipefail
cd "$(dirname "$0")/.."
TANDEM=${TANDEM:-build/bin/tandem}
P=${P:-2}
SCHEME=${SCHEME:-zigzag}
THREADS=${THREADS:-1}
PROMPT=${PROMPT:-3000}
MAX_TOKENS=${MAX_TOKENS:-16}
R=${R:-3}
KV_POOL=${KV_POOL:-48M}
PORT=${PORT:-8281}
[[ $# -eq 1 ]] || { echo "usage: scripts/bench-serve-sp.sh MODEL.gguf" >&2; exit 2; }
model=$1
[[ -x $TANDEM ]] || { echo "bench-serve-sp.sh: $TANDEM not found; build it or set TANDEM" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench-serve-sp.sh: mpirun not found (scripts/install-deps.sh)" >&2; exit 2; }
# shellcheck source=scripts/serve-common.sh
source scripts/serve-common.sh

# Rank 0 of the job (the process listening), to stop it with SIGTERM as a user would.
rank0() {
  for p in $(pgrep -f -- "serve -m $model --port $PORT"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0' && echo "$p" && return
  done
}

run() {  # name
  "$TANDEM" bench-serve --url "http://127.0.0.1:$PORT" -c 1 -r "$R" -p "$PROMPT" -n "$MAX_TOKENS" --json \
    >"$OUT/$1.json" 2>/dev/null || echo "bench-serve-sp.sh: bench-serve failed ($1)" >&2
}

echo "machine: $(nproc) cores; load: $(load)"
# P ranks, each with a pool too small for the prompt.
PORT=$((PORT + 1))
# shellcheck disable=SC2086
mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$P" "$TANDEM" serve -m "$model" --port "$PORT" \
  -t "$THREADS" --ctx-size 1024 --kv-pool "$KV_POOL" --sp "$SCHEME" >"$OUT/sp.log" 2>&1 &
pid=$!
wait_up || { echo "bench-serve-sp.sh: the $P-rank server did not come up:" >&2; tail -5 "$OUT/sp.log" >&2; exit 1; }
grep "prefilled by" "$OUT/sp.log" >&2 || true
run sp
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^tandem_sp_(sequences_total|prompt_tokens_total|last_prefill_seconds) ' >&2 || true
r0=$(rank0)
[[ -n $r0 ]] && kill -TERM "$r0"
wait "$pid" 2>/dev/null || true
pid=""
# One process, P x THREADS threads, a pool that holds the prompt.
PORT=$((PORT + 1))
"$TANDEM" serve -m "$model" --port "$PORT" -t $((P * THREADS)) --parallel 1 --ctx-size $((PROMPT + MAX_TOKENS + 8)) \
  >"$OUT/one.log" 2>&1 &
pid=$!
wait_up || { echo "bench-serve-sp.sh: the one-process server did not come up:" >&2; tail -5 "$OUT/one.log" >&2; exit 1; }
run one
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
pid=""
echo "load after: $(load)"

python3 - "$OUT" "$P" "$SCHEME" "$THREADS" "$PROMPT" "$KV_POOL" <<'PY'
import json, pathlib, sys
out, P, scheme, threads, prompt, pool = sys.argv[1:]
print(f"| server | prompt tokens | TTFT median ms | TTFT max ms | ITL median ms | failed |")
print("|---|---|---|---|---|---|")
for name, what in (("sp", f"mpirun -np {P} --sp {scheme}, {threads} thread(s) per rank, --kv-pool {pool} per rank"),
                   ("one", f"one process, {int(P) * int(threads)} threads, a pool holding the prompt")):
    f = pathlib.Path(out) / f"{name}.json"
    try:
        j = json.loads(f.read_text())
    except (OSError, ValueError):
        print(f"| {what} | {prompt} | - | - | - | all |")
        continue
    t, i = j["ttft_ms"], j["itl_ms"]
    print(f"| {what} | {prompt} | {t['median']:.0f} | {t['max']:.0f} | {i['median']:.1f} | {j['failed']} |")
PY
