# Sourced by the serving benchmarks (bench-serve.sh, bench-serve-sp.sh): a scratch folder
# $OUT removed at exit with the server in $pid, and wait_up, which waits until the
# server on $PORT answers /health (false when it exits first or after 120 s).
OUT=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT

wait_up() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

load() { uptime | sed 's/.*load average/load average/'; }
