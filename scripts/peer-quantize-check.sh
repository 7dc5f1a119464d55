#!/usr/bin/env bash
# Does tandem quantize weights byte for byte as a peer GGUF quantizer (llama.cpp's
# llama-quantize, built outside this repository) does?
#
#   LLAMA_QUANTIZE=/path/to/llama-quantize scripts/peer-quantize-check.sh [TYPE...]
#
# Writes one F32 synthetic model (`tandem make-model --type f32`), then per TYPE (tandem
# type names: q4_0 q8_0 q4_1 q5_0 q5_1 iq4_nl, the K-quants, ...; default: q8_0 q4_0 q4_1
# q5_0 q5_1 iq4_nl) quantizes it twice: with `llama-quantize --pure F32 OUT TYPE` (every
# matrix to TYPE, no importance matrix) and with `tandem make-model --type TYPE` (same
# seed and shape, so the same f32 values). A TYPE written mix:NAME (mix:q4_k_m, ...) is a
# recipe: `llama-quantize F32 OUT NAME` against `tandem make-model --recipe NAME`. Then compares the two files tensor by tensor:
# the same names, GGUF types and shapes, and the same data bytes. Prints one line per
# type (how many tensors are byte-identical) and, for the first 8 tensors that differ,
# how many of their blocks differ and the first one. Exit 0 when every tensor of every type is
# identical, 1 when some differ, 2 on a usage or tool error.
#
# Environment:
#   LLAMA_QUANTIZE  the peer's llama-quantize binary (required)
#   TANDEM          tandem binary (default build/bin/tandem)
#   PRESET          make-model shape preset (default small)
#   VOCAB           vocabulary GGUF copied into the models (default
#                   ../shared/vocab/ggml-vocab-llama-spm.gguf; unset or missing: none, V 32000)
#   SEED            make-model seed (default 1234)
#   THREADS         llama-quantize threads (default 2)
#   KEEP            a folder to keep the files in (default: a temporary one, removed)
set -uo pipefail
cd "$(dirname "$0")/.."
TANDEM=${TANDEM:-build/bin/tandem}
PRESET=${PRESET:-small}
VOCAB=${VOCAB-../shared/vocab/ggml-vocab-llama-spm.gguf}
SEED=${SEED:-1234}
THREADS=${THREADS:-2}
[[ -n ${LLAMA_QUANTIZE:-} && -x ${LLAMA_QUANTIZE} ]] ||
  { echo "$0: set LLAMA_QUANTIZE to a llama-quantize binary (got '${LLAMA_QUANTIZE:-}')" >&2; exit 2; }
[[ -x $TANDEM ]] || { echo "$0: TANDEM: no tandem binary at '$TANDEM'" >&2; exit 2; }
command -v python3 >/dev/null || { echo "$0: python3 not found" >&2; exit 2; }
TYPES=("$@")
[[ ${#TYPES[@]} -gt 0 ]] || TYPES=(q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl)

if [[ -n ${KEEP:-} ]]; then
  WORK=$KEEP
  mkdir -p "$WORK" || exit 2
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi

model_args=(--preset "$PRESET" --seed "$SEED")
if [[ -n $VOCAB && -f $VOCAB ]]; then
  model_args+=(--vocab "$VOCAB")
else
  model_args+=(--vocab-size 32000)
fi

"$TANDEM" make-model "${model_args[@]}" --type f32 -o "$WORK/f32.gguf" >"$WORK/make-f32.log" 2>&1 ||
  { echo "$0: tandem make-model --type f32 failed (log: $WORK/make-f32.log)" >&2; cat "$WORK/make-f32.log" >&2; exit 2; }

# compare.py OURS PEER: per tensor of the two GGUF files, identical or how it differs.
cat >"$WORK/compare.py" <<'PY'
import struct, sys

# GGUF tensor types: id -> (name, values per block, bytes per block).
TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
         6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
         10: ("q2_k", 256, 84), 11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144),
         13: ("q5_k", 256, 176), 14: ("q6_k", 256, 210), 15: ("q8_k", 256, 292),
         20: ("iq4_nl", 32, 18), 23: ("iq4_xs", 256, 136), 24: ("i8", 1, 1),
         25: ("i16", 1, 2), 26: ("i32", 1, 4), 28: ("f64", 1, 8), 30: ("bf16", 1, 2)}
def die(msg):  # a file this script cannot read: exit 2, not 1 (tensors differ)
    print(msg, file=sys.stderr)
    sys.exit(2)

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # type -> bytes

def read_gguf(path):
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]
    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s
    def value(t):
        nonlocal pos
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            if et in SCALAR:  # skipped, not decoded
                pos += SCALAR[et] * n
                return None
            return [value(et) for _ in range(n)]
        if t not in SCALAR:
            die(f"{path}: metadata value of unknown GGUF type {t}")
        fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q",
               11: "q", 12: "d"}[t]
        return take(fmt)
    if buf[:4] != b"GGUF":
        die(f"{path}: not a GGUF file (magic {buf[:4]!r})")
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    if version < 2:
        die(f"{path}: GGUF version {version} is not supported")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("I"))
    tensors = {}
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        ttype, offset = take("I"), take("Q")
        tensors[name] = (ttype, dims, offset)
    align = meta.get("general.alignment", 32)
    data = (pos + align - 1) // align * align
    out = {}
    for name, (ttype, dims, offset) in tensors.items():
        if ttype not in TYPES:
            die(f"{path}: tensor {name}: GGUF type id {ttype} unknown to this script")
        tname, bs, bb = TYPES[ttype]
        n = 1
        for d in dims:
            n *= d
        size = n // bs * bb
        start = data + offset
        if start + size > len(buf):
            die(f"{path}: tensor {name}: data past the end of the file")
        out[name] = (tname, dims, buf[start:start + size], bb)
    return out

ours, peer = read_gguf(sys.argv[1]), read_gguf(sys.argv[2])
same = 0
counts = {}
problems = []
for name in sorted(set(ours) | set(peer)):
    if name not in peer:
        problems.append(f"  {name}: only in tandem's file")
        continue
    if name not in ours:
        problems.append(f"  {name}: only in the peer's file")
        continue
    (ot, od, ob, bb), (pt, pd, pb, _) = ours[name], peer[name]
    if (ot, od) != (pt, pd):
        problems.append(f"  {name}: tandem {ot} {od}, peer {pt} {pd}")
        continue
    if ob == pb:
        same += 1
        counts[ot] = counts.get(ot, 0) + 1
        continue
    nblk = len(ob) // bb
    diff = [i for i in range(nblk) if ob[i * bb:(i + 1) * bb] != pb[i * bb:(i + 1) * bb]]
    i = diff[0]
    problems.append(f"  {name} ({ot}): {len(diff)} of {nblk} blocks differ; first block {i}: "
                    f"tandem {ob[i * bb:(i + 1) * bb].hex()} peer {pb[i * bb:(i + 1) * bb].hex()}")
total = len(set(ours) | set(peer))
kinds = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
print(f"{same} of {total} tensors byte-identical ({kinds})")
for p in problems[:8]:
    print(p)
if len(problems) > 8:
    print(f"  ... and {len(problems) - 8} more tensors")
sys.exit(0 if same == total else 1)
PY

status=0
for t in "${TYPES[@]}"; do
  lt=${t,,}
  # mix:NAME: a recipe (tandem --recipe NAME; the peer without --pure); else a type.
  if [[ $lt == mix:* ]]; then
    lt=${lt#mix:}
    ours=(--recipe "$lt")
    pure=()
  else
    ours=(--type "$lt")
    pure=(--pure)
  fi
  peer_type=${lt^^}
  if ! "$TANDEM" make-model "${model_args[@]}" "${ours[@]}" -o "$WORK/tandem-$lt.gguf" \
      >"$WORK/make-$lt.log" 2>&1; then
    echo "$lt: tandem make-model ${ours[*]} failed: $(tail -1 "$WORK/make-$lt.log")"
    status=2
    continue
  fi
  if ! "$LLAMA_QUANTIZE" "${pure[@]}" "$WORK/f32.gguf" "$WORK/peer-$lt.gguf" "$peer_type" "$THREADS" \
      >"$WORK/peer-$lt.log" 2>&1; then
    echo "$lt: llama-quantize ${pure[*]} ... $peer_type failed: $(tail -1 "$WORK/peer-$lt.log")"
    status=2
    continue
  fi
  result=$(python3 "$WORK/compare.py" "$WORK/tandem-$lt.gguf" "$WORK/peer-$lt.gguf")
  rc=$?
  echo "$lt: $result"
  if [[ $rc != 0 && $status == 0 ]]; then status=1; fi
  [[ $rc -le 1 ]] || status=2
done
exit $status
