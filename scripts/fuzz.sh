#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a given time from a
# seed corpus; prints per target the run time, executions and crashes found.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGETS...]
#
# Targets: gguf_reader model_loader tokenizer_spm tokenizer_bpe cli_numbers (default: all).
# SECONDS_PER_TARGET=0 only replays the seeds and tests/fuzz_regressions/<target>/ once.
#
# Environment: BUILD_DIR (default build-fuzz), TANDEM_SHARED (default ../shared),
# FUZZ_KEEP_GOING=1 restarts a target after a crash until its time is used (default: stop
# at the first crash, as libFuzzer does), FUZZ_JOBS (parallel targets, default 1).
#
# Layout under BUILD_DIR: seeds/<target>/ (regenerated each run), corpus/<target>/
# (grows across runs), artifacts/<target>/ (crash-*, leak-*, timeout-*, oom-* inputs),
# logs/<target>.log. A crash input, once fixed, goes to tests/fuzz_regressions/<target>/
# so that the unit suite replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECS=${1:-60}
shift || true
ALL=(gguf_reader model_loader tokenizer_spm tokenizer_bpe cli_numbers)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (${ALL[*]})" >&2; exit 2; }
done
[[ "$SECS" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a number" >&2; exit 2; }

BUILD=${BUILD_DIR:-build-fuzz}
SHARED=${TANDEM_SHARED:-$ROOT/../shared}
export TANDEM_SHARED=$SHARED

# --- clang with libFuzzer -----------------------------------------------------------
have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local tmp
  tmp=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
    >"$tmp/t.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$tmp/t.cpp" -o "$tmp/t" >/dev/null 2>&1
  local rc=$?
  rm -rf "$tmp"
  return $rc
}
if ! have_libfuzzer; then
  echo "fuzz.sh: installing clang and libclang-rt-dev (libFuzzer)"
  bash scripts/install-deps.sh --fuzz
  have_libfuzzer || { echo "fuzz.sh: clang++ cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi

# --- build --------------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTANDEM_FUZZ=ON -DTANDEM_BUILD_TESTS=OFF -DTANDEM_SHARED_DIR="$SHARED" >/dev/null
fi
cmake --build "$BUILD" --target fuzz_seed_gen $(printf 'fuzz_%s ' "${TARGETS[@]}")

# --- seeds --------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
GEN=$BUILD/fuzz/fuzz_seed_gen
make_seeds() {  # target dir
  local t=$1 d=$2 v=$SHARED/vocab
  rm -rf "$d" && mkdir -p "$d"
  case $t in
    gguf_reader | model_loader)
      "$GEN" models "$d"
      # The shipped SentencePiece vocabulary (723 KB; the BPE ones exceed -max_len).
      cp "$v/ggml-vocab-llama-spm.gguf" "$d/seed-shipped-vocab-llama-spm"
      ;;
    tokenizer_spm) "$GEN" texts "$d" 0 "$v/ggml-vocab-llama-spm.gguf.inp" ;;
    tokenizer_bpe)
      "$GEN" texts "$d" 0 "$v/ggml-vocab-llama-bpe.gguf.inp"  # bit 4 clear: llama-bpe
      "$GEN" texts "$d" 16 "$v/ggml-vocab-gpt-2.gguf.inp"     # bit 4 set: gpt-2
      ;;
    cli_numbers) "$GEN" cli "$d" ;;
  esac
  return 0
}

max_len() {
  case $1 in
    gguf_reader | model_loader) echo $((1 << 20)) ;;
    tokenizer_*) echo 16384 ;;
    cli_numbers) echo 256 ;;
  esac
}

run_target() {  # target -> prints one summary line
  local t=$1
  local bin=$BUILD/fuzz/fuzz_$t seeds=$BUILD/seeds/$t corpus=$BUILD/corpus/$t
  local art=$BUILD/artifacts/$t log=$BUILD/logs/$t.log reg=tests/fuzz_regressions/$t
  mkdir -p "$corpus" "$art" "$BUILD/logs" "$reg"
  make_seeds "$t" "$seeds"
  : >"$log"
  local before execs=0 crashes=0 start now left rc
  before=$(ls "$art" | wc -l)
  start=$(date +%s)
  if [ "$SECS" -eq 0 ]; then
    set +e
    "$bin" -runs=0 -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$art/" "$seeds" "$reg" >>"$log" 2>&1
    rc=$?
    set -e
    [ $rc -ne 0 ] && crashes=1
  else
    while :; do
      now=$(date +%s)
      left=$((SECS - (now - start)))
      [ $left -le 0 ] && break
      set +e
      "$bin" -max_total_time="$left" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$art/" "$corpus" "$seeds" "$reg" >>"$log" 2>&1
      rc=$?
      set -e
      [ $rc -eq 0 ] && break
      crashes=$((crashes + 1))
      [ "${FUZZ_KEEP_GOING:-0}" = 1 ] || break
    done
  fi
  now=$(date +%s)
  # Executions: sum of libFuzzer's final stats over the runs of this target.
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
  local new
  new=$(($(ls "$art" | wc -l) - before))
  printf '%-14s %6ss %12s executions  %d crash(es)%s\n' "$t" "$((now - start))" "$execs" \
    "$crashes" "$([ $new -gt 0 ] && echo ", new artifacts in $art/ (log $log)")"
  return 0
}

echo "fuzz.sh: ${SECS}s per target: ${TARGETS[*]}"
printf '%-14s %7s %12s\n' target time executions
summary=$BUILD/logs/summary.txt
mkdir -p "$BUILD/logs"
: >"$summary"
JOBS=${FUZZ_JOBS:-1}
if [ "$JOBS" -le 1 ]; then
  for t in "${TARGETS[@]}"; do run_target "$t" | tee -a "$summary"; done
else
  for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run_target "$t" >"$BUILD/logs/$t.summary" &
  done
  wait
  for t in "${TARGETS[@]}"; do cat "$BUILD/logs/$t.summary" | tee -a "$summary"; done
fi
if grep -q 'new artifacts' "$summary"; then
  echo "fuzz.sh: crashes found; reproduce with $BUILD/fuzz/fuzz_<target> <artifact>" >&2
  exit 1
fi
