#!/usr/bin/env bash
# Re-predict the decode of every row of a `tandem compare` output from the cores as its
# decode round went: for each row, a copy of the planner's profile holding that round's
# `core_rates`, then `tandem plan` on it. Shows how a change to the planner's pricing of
# the cores would have done on runs already measured.
#
#   scripts/compare-repredict.sh COMPARE_DIR [as-run|alone]
#
# as-run (default): the recorded readings. alone: each core's busy one-token reading
# replaced by its alone one (the pricing before 57358a2, which kept the alone stream rate).
# TANDEM: the binary (default build/bin/tandem). The profile and model are the ones
# results.json names (planner_hardware, model); they must still exist.
set -euo pipefail
DIR=${1:?usage: $0 COMPARE_DIR [as-run|alone]}
MODE=${2:-as-run}
case "$MODE" in as-run|alone) ;; *) echo "$0: mode must be as-run or alone, not '$MODE'" >&2; exit 2;; esac
TANDEM=${TANDEM:-$(dirname "$0")/../build/bin/tandem}
[ -f "$DIR/results.json" ] || { echo "$0: $DIR/results.json not found" >&2; exit 2; }
[ -x "$TANDEM" ] || { echo "$0: $TANDEM is not an executable (set TANDEM)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "$0: python3 not found" >&2; exit 2; }
python3 - "$DIR" "$MODE" "$TANDEM" <<'PY'
import copy, json, os, subprocess, sys, tempfile
d, mode, tandem = sys.argv[1:4]
res = json.load(open(os.path.join(d, 'results.json')))
for key in ('planner_hardware', 'model'):
    if not os.path.exists(res[key]):
        sys.exit(f"compare-repredict: results.json's {key} '{res[key]}' no longer exists")
prof = json.load(open(res['planner_hardware']))
inside = total = 0
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'profile.json')
    for run in res['runs']:
        if run['strategy'] == 'naive' or not run.get('rounds') or not run.get('decode_tokens_per_s'):
            continue
        rates = copy.deepcopy(run['rounds'][run['decode_round']]['core_rates'])
        if mode == 'alone':
            for c in rates:
                if 'busy' in c:
                    c['busy']['stream'] = c['stream']
        p = copy.deepcopy(prof)
        p['core_rates'] = rates
        json.dump(p, open(path, 'w'))
        P = run['ranks']
        args = [tandem, 'plan', '-m', res['model'], '-n', str(run['tokens']), '--gpus', str(P),
                '--gpus-per-node', str(P), '--hardware', path, '--decode-tokens', '16', '--json']
        if P == 1:
            args += ['--threads', str(run['threads_per_rank'])]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        # Decode is the same computation under every scheme (the cache sharded across the
        # ranks): hybrid's row reads ring's.
        name = 'single' if P == 1 else ('ring' if run['strategy'].startswith('hybrid') else run['strategy'])
        plan = next(s for s in json.loads(out)['strategies'] if s['strategy'] == name)
        predicted = 1 / plan['decode_seconds_per_token']
        measured = run['decode_tokens_per_s']
        err = predicted / measured - 1
        total += 1
        inside += abs(err) <= 0.25
        print(f"{run['label']:<22} N={run['tokens']:<6} measured {measured:7.0f} tok/s  "
              f"predicted {predicted:7.0f}  {100 * err:+4.0f}%{'' if abs(err) <= 0.25 else '  out'}")
print(f"{mode}: {inside} of {total} decode predictions within 25%")
PY
