#!/usr/bin/env bash
# tandem serve against llama.cpp's llama-server on the same GGUF files, side by side in
# one run: for each model and concurrency C, each server is started alone (same threads,
# C sequences in parallel, continuous batching), loaded by `tandem bench-serve` (R
# requests of P prompt tokens and M output tokens, greedy, ignore_eos), and stopped.
# Prints one table: output tokens/s, time to first token (median, p99) and inter-token
# latency (median) of each, and the ratio of output tokens/s.
#
#   LLAMA_SERVER=/path/to/llama-server scripts/bench-serve.sh MODEL.gguf...
#
# Environment: TANDEM (default build/bin/tandem), THREADS (2), CONCURRENCY ("1 4 16 64"),
# REQUESTS (per concurrency; default 2 x C, at least 8), PROMPT (128), MAX_TOKENS (128),
# PORT (8181; each run takes the next), LLAMA_SERVER (without it, tandem alone).
set -euo pipefail
cd "$(dirname "$0")/.."
TANDEM=${TANDEM:-build/bin/tandem}
THREADS=${THREADS:-2}
CONCURRENCY=${CONCURRENCY:-"1 4 16 64"}
PROMPT=${PROMPT:-128}
MAX_TOKENS=${MAX_TOKENS:-128}
PORT=${PORT:-8181}
LLAMA_SERVER=${LLAMA_SERVER:-}
[[ $# -ge 1 ]] || { echo "usage: scripts/bench-serve.sh MODEL.gguf..." >&2; exit 2; }
[[ -x $TANDEM ]] || { echo "bench-serve.sh: $TANDEM not found; build it or set TANDEM" >&2; exit 2; }
[[ -z $LLAMA_SERVER || -x $LLAMA_SERVER ]] || { echo "bench-serve.sh: LLAMA_SERVER=$LLAMA_SERVER is not executable" >&2; exit 2; }
# shellcheck source=scripts/serve-common.sh
source scripts/serve-common.sh

echo "machine: $(nproc) cores; load: $(load)"
for model in "$@"; do
  name=$(basename "$model" .gguf)
  for c in $CONCURRENCY; do
    requests=${REQUESTS:-$((2 * c < 8 ? 8 : 2 * c))}
    ctx=$((PROMPT + MAX_TOKENS + 8))
    for server in tandem llama; do
      [[ $server == llama && -z $LLAMA_SERVER ]] && continue
      PORT=$((PORT + 1))  # a fresh port each time: the last one may linger in TIME_WAIT
      if [[ $server == tandem ]]; then
        "$TANDEM" serve -m "$model" --port "$PORT" -t "$THREADS" --parallel "$c" --ctx-size "$ctx" \
          >"$OUT/server.log" 2>&1 &
      else
        "$LLAMA_SERVER" -m "$model" --port "$PORT" -t "$THREADS" -np "$c" -c $((ctx * c)) -cb \
          >"$OUT/server.log" 2>&1 &
      fi
      pid=$!
      if ! wait_up; then
        echo "bench-serve.sh: $server did not come up on $model:" >&2
        tail -5 "$OUT/server.log" >&2
        exit 1
      fi
      echo "$name c=$c $server ($requests requests)" >&2
      "$TANDEM" bench-serve --url "http://127.0.0.1:$PORT" -c "$c" -r "$requests" -p "$PROMPT" -n "$MAX_TOKENS" \
        --json >"$OUT/$name.$c.$server.json" 2>/dev/null || echo "bench-serve.sh: bench-serve failed ($server)" >&2
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
      pid=""
    done
  done
done
echo "load after: $(load)"

python3 - "$OUT" <<'PY'
import json, pathlib, sys
rows = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    name, c, server = f.name[:-5].rsplit(".", 2)
    try:
        rows[(name, int(c), server)] = json.loads(f.read_text())
    except ValueError:
        pass
print("| model | C | tandem out tok/s | llama-server out tok/s | ratio | tandem TTFT median / p99 ms | llama-server TTFT median / p99 ms | tandem ITL median ms | llama-server ITL median ms | failed (t/l) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (name, c) in sorted({(k[0], k[1]) for k in rows}):
    t, l = rows.get((name, c, "tandem")), rows.get((name, c, "llama"))
    def tok(r): return f"{r['output_tokens_per_s']:.1f}" if r else "-"
    def ttft(r): return f"{r['ttft_ms']['median']:.0f} / {r['ttft_ms']['p99']:.0f}" if r else "-"
    def itl(r): return f"{r['itl_ms']['median']:.1f}" if r else "-"
    ratio = f"{t['output_tokens_per_s'] / l['output_tokens_per_s']:.2f}x" if t and l and l['output_tokens_per_s'] > 0 else "-"
    failed = f"{t['failed'] if t else '-'}/{l['failed'] if l else '-'}"
    print(f"| {name} | {c} | {tok(t)} | {tok(l)} | {ratio} | {ttft(t)} | {ttft(l)} | {itl(t)} | {itl(l)} | {failed} |")
PY
