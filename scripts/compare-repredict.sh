#!/usr/bin/env bash
# Re-predict the prefill and decode of every row of a `tandem compare` output from the
# cores as its rounds went: for each row and round, a copy of the planner's profile
# holding that round's `core_rates`, then `tandem plan --scheme` on it; the row's
# prediction is the median of its rounds', as compare takes it. Shows how a change to the
# planner would have done on runs already measured, against the targets of issue 15
# (prefill within 35% below 1024 tokens, else 20%; decode within 25%).
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
counts = {'prefill': [0, 0], 'decode': [0, 0]}

def plan(tmp, run, round_index):
    rates = copy.deepcopy(run['rounds'][round_index]['core_rates'])
    if mode == 'alone':
        for c in rates:
            if 'busy' in c:
                c['busy']['stream'] = c['stream']
    p = copy.deepcopy(prof)
    p['core_rates'] = rates
    path = os.path.join(tmp, 'profile.json')
    json.dump(p, open(path, 'w'))
    P = run['ranks']
    args = [tandem, 'plan', '-m', res['model'], '-n', str(run['tokens']), '--gpus', str(P),
            '--gpus-per-node', str(P), '--hardware', path, '--decode-tokens', '16',
            '--sp-chunk', 'auto', '--json', '--scheme', 'single' if P == 1 else run['strategy']]
    if P == 1:
        args += ['--threads', str(run['threads_per_rank'])]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)['strategies'][0]

def middle(values):
    # As compare takes them: the median of the rounds' predictions (of two, the faster).
    values = sorted(values)
    return values[(len(values) - 1) // 2]

def judge(phase, err, tol):
    counts[phase][1] += 1
    counts[phase][0] += abs(err) <= tol
    return f"{100 * err:+4.0f}%{'    ' if abs(err) <= tol else ' out'}"

with tempfile.TemporaryDirectory() as tmp:
    for run in res['runs']:
        if run['strategy'] == 'naive' or not run.get('rounds') or not run.get('prefill_seconds'):
            continue
        N = run['tokens']
        rounds = range(len(run['rounds']))
        pre = middle([plan(tmp, run, i)['prefill_seconds'] for i in rounds if run['rounds'][i]['ok']])
        line = (f"{run['label']:<16} N={N:<6} prefill {run['prefill_seconds']:8.4f} s "
                f"predicted {pre:8.4f}  {judge('prefill', pre / run['prefill_seconds'] - 1, 0.35 if N < 1024 else 0.20)}")
        if run.get('decode_tokens_per_s'):
            # Decode is the same computation under every scheme (the cache sharded across
            # the ranks).
            dec = 1 / middle([plan(tmp, run, i)['decode_seconds_per_token'] for i in rounds
                              if run['rounds'][i]['ok'] and run['rounds'][i].get('decode_tokens_per_s')])
            measured = run['decode_tokens_per_s']
            line += (f"  decode {measured:6.0f} tok/s predicted {dec:6.0f}  "
                     f"{judge('decode', dec / measured - 1, 0.25)}")
        print(line)
for phase, (inside, total) in counts.items():
    print(f"{mode}: {inside} of {total} {phase} predictions within target")
PY
