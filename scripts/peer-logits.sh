#!/usr/bin/env bash
# Logits of GGUF models computed by tandem and by the llama.cpp peer (built outside this
# repository), side by side on the same prompt.
#
# usage: scripts/peer-logits.sh [--ref F32.gguf] MODEL.gguf...
#
# For each model: the max abs difference of tandem's prompt logits from the peer's, and
# top-1 agreement (positions whose argmax both pick). With --ref (the F32 model the
# others were quantized from), also the peer's own spread: max abs difference between
# the peer's logits of the model and of the F32 reference (the target: tandem's
# difference within that spread).
#
# Environment:
#   LLAMA_DIR  llama.cpp source tree with libllama built in build/ (default /tmp/peer/llama.cpp)
#   TANDEM     tandem binary (default build/bin/tandem)
#   N          prompt tokens (default 64): random ids in [3, V) from a fixed seed
#   THREADS    threads for both (default 2)
#   OUT        folder for the logits files (default a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_DIR=${LLAMA_DIR:-/tmp/peer/llama.cpp}
TANDEM=${TANDEM:-build/bin/tandem}
N=${N:-64}
THREADS=${THREADS:-2}
OUT=${OUT:-$(mktemp -d)}
ref=""
if [[ ${1:-} == --ref ]]; then ref=$2; shift 2; fi
[[ $# -gt 0 ]] || { sed -n 2,20p "$0"; exit 2; }
[[ -f $LLAMA_DIR/include/llama.h && -d $LLAMA_DIR/build/bin ]] ||
  { echo "peer-logits: no built llama.cpp at LLAMA_DIR=$LLAMA_DIR" >&2; exit 2; }

dumper=$OUT/dump_logits
g++ -O2 -std=c++17 scripts/peer/dump_logits.cpp -I"$LLAMA_DIR/include" -I"$LLAMA_DIR/ggml/include" \
  -L"$LLAMA_DIR/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA_DIR/build/bin" -o "$dumper"

vocab_of() {  # the peer's vocabulary size of a model (from its one-token run)
  THREADS=$THREADS "$dumper" "$1" "$OUT/vocab.f32" 1 2>&1 | sed -n 's/^wrote 1 x \([0-9]*\) logits$/\1/p'
}
ids_for() {  # N ids in [3, V)
  python3 -c "import random,sys; r=random.Random(1234); print(','.join(str(r.randrange(3,int(sys.argv[1]))) for _ in range(int(sys.argv[2]))))" "$1" "$N"
}

run_both() {  # model tag ids
  THREADS=$THREADS "$dumper" "$1" "$OUT/$2.peer.f32" ${3//,/ } 2>"$OUT/$2.peer.log" ||
    { echo "peer-logits: the peer failed on $1 (see $OUT/$2.peer.log)" >&2; return 1; }
  "$TANDEM" logits -m "$1" --ids "$3" --out "$OUT/$2.tandem.f32" -t "$THREADS" >"$OUT/$2.tandem.log" 2>&1 ||
    { echo "peer-logits: tandem failed on $1 (see $OUT/$2.tandem.log)" >&2; return 1; }
}

first=${ref:-$1}
V=$(vocab_of "$first")
[[ -n $V ]] || { echo "peer-logits: cannot read the vocabulary size of $first" >&2; exit 2; }
ids=$(ids_for "$V")
if [[ -n $ref ]]; then run_both "$ref" ref "$ids"; fi
printf '%-28s %12s %12s %10s\n' model "max|t-p|" "peer spread" "top-1"
for m in "$@"; do
  tag=$(basename "$m" .gguf)
  run_both "$m" "$tag" "$ids" || continue
  python3 - "$OUT" "$tag" "$V" "${ref:+ref}" <<'PY'
import array, sys
out, tag, V, ref = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else ""
def load(name):
    a = array.array("f"); a.frombytes(open(f"{out}/{name}.f32", "rb").read()); return a
t, p = load(f"{tag}.tandem"), load(f"{tag}.peer")
assert len(t) == len(p) and len(t) % V == 0, "logit counts differ"
n = len(t) // V
diff = max(abs(x - y) for x, y in zip(t, p))
def argmax(a, i): row = a[i * V:(i + 1) * V]; return max(range(V), key=row.__getitem__)
top1 = sum(argmax(t, i) == argmax(p, i) for i in range(n)) / n
spread = ""
if ref:
    r = load("ref.peer")
    spread = f"{max(abs(x - y) for x, y in zip(p, r)):.4g}"
print(f"{tag:<28} {diff:12.4g} {spread:>12} {top1:10.3f}")
PY
done
echo "(logits in $OUT)"
