#!/usr/bin/env bash
# Lists the processes a test run left alive: those whose environment carries MARKER
# (`HYDRANT_TEST_RUN=MARKER`, inherited by everything the suite starts) or whose working
# directory lies under DIR (the run's TMPDIR; app instances get a cleared environment but
# live in instance directories there). Zombies are dead and not counted. Waits up to SETTLE
# seconds for processes still in an orderly stop, then prints one line per leaked process
# on stderr and their count on stdout.
#
# usage: scripts/leaked-processes.sh MARKER DIR [SETTLE=15] [--kill]
set -uo pipefail
marker=$1; dir=$(realpath -m "$2"); settle=${3:-15}; kill=${4:-}

leaked() {
  local p pid cwd state
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    state=$(awk '{sub(/.*\) /, ""); print $1}' "$p/stat" 2>/dev/null) || continue
    [[ -z $state || $state == Z ]] && continue
    cwd=$(readlink "$p/cwd" 2>/dev/null) || cwd=""
    cwd=${cwd% (deleted)}
    if [[ -n $cwd && ( $cwd == "$dir" || $cwd == "$dir"/* ) ]] \
      || { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "HYDRANT_TEST_RUN=$marker"; then
      echo "$pid"
    fi
  done
}

pids=()
for ((i = 0; i <= settle; i++)); do
  mapfile -t pids < <(leaked)
  ((${#pids[@]} == 0)) && break
  ((i < settle)) && sleep 1
done
for pid in "${pids[@]}"; do
  echo "leaked: pid $pid: $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" >&2
  [[ $kill == --kill ]] && kill -KILL "$pid" 2>/dev/null
done
echo "${#pids[@]}"
