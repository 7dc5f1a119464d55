#!/bin/sh
# Runs a command under a hard memory limit: a memory cgroup made for this process alone
# (cgroup v1 memory.limit_in_bytes, or v2 memory.max; swap limited too where the kernel
# has it), removed afterwards. Under mpirun every rank runs this script, so each rank
# gets its own limit:
#
#   mpirun -np 2 scripts/in-memory-limit.sh 256M build/bin/tandem prefill ...
#
# LIMIT takes a K, M or G suffix (powers of 1024). Exit status: the command's; 137 with a
# message when the kernel killed it for exceeding the limit; 77 when no memory cgroup can
# be made here (needs root and a writable cgroup file system).
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 LIMIT COMMAND [ARGS...]" >&2
  exit 2
fi
limit_text=$1
shift
case $limit_text in
  *[Kk]) bytes=$(( ${limit_text%?} * 1024 )) ;;
  *[Mm]) bytes=$(( ${limit_text%?} * 1024 * 1024 )) ;;
  *[Gg]) bytes=$(( ${limit_text%?} * 1024 * 1024 * 1024 )) ;;
  *[0-9]) bytes=$limit_text ;;
  *) echo "$0: LIMIT '$limit_text' is not a size (e.g. 256M)" >&2; exit 2 ;;
esac
name="tandem-limit-$$"
if [ -w /sys/fs/cgroup/memory ] && [ -f /sys/fs/cgroup/memory/cgroup.procs ]; then
  cg=/sys/fs/cgroup/memory/$name
  mkdir "$cg" 2>/dev/null || { echo "$0: cannot make $cg" >&2; exit 77; }
  echo "$bytes" > "$cg/memory.limit_in_bytes" || exit 77
  [ -f "$cg/memory.memsw.limit_in_bytes" ] && echo "$bytes" > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null
  peak_file=$cg/memory.max_usage_in_bytes
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  cg=/sys/fs/cgroup/$name
  mkdir "$cg" 2>/dev/null || { echo "$0: cannot make $cg" >&2; exit 77; }
  echo "$bytes" > "$cg/memory.max" || exit 77
  [ -f "$cg/memory.swap.max" ] && echo 0 > "$cg/memory.swap.max"
  peak_file=$cg/memory.peak
else
  echo "$0: no writable memory cgroup here" >&2
  exit 77
fi
# This shell joins the cgroup; the command, its child, inherits it.
echo $$ > "$cg/cgroup.procs" || { rmdir "$cg"; exit 77; }
"$@"
rc=$?
peak=$(cat "$peak_file" 2>/dev/null || echo 0)
# Leave the cgroup (back to the root) so it can be removed.
parent=$(dirname "$cg")
echo $$ > "$parent/cgroup.procs" 2>/dev/null
rmdir "$cg" 2>/dev/null
if [ $rc -eq 137 ]; then
  echo "in-memory-limit: the command was killed (SIGKILL: over the $limit_text limit)" >&2
fi
echo "in-memory-limit: limit $bytes bytes, cgroup peak $peak bytes, exit $rc" >&2
exit $rc
