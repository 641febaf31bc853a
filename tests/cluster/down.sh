#!/usr/bin/env bash
# Stop everything up.sh started and check that no test port is left bound. Safe to run any time,
# also after a run that was killed halfway (stale pid files are verified before anything is killed).
# Logs stay in $SCANJOB_CACHE/run/logs for inspection.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

for name in "${SERVICES[@]}"; do
  pidfile=$RUN_DIR/pids/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && is_ours "$pid"; then
    log "stopping $name (pid $pid)"
    stop_pid "$pid" 20
  fi
  rm -f "$pidfile"
done

# A run killed before it wrote its pid files can still hold ports: stop our own binaries there.
for port in "${ALL_PORTS[@]}"; do
  for pid in $(port_pids "$port"); do
    if is_ours "$pid"; then
      log "stopping leftover $(readlink "/proc/$pid/exe") (pid $pid) on port $port"
      stop_pid "$pid" 10
    fi
  done
done

busy=()
for port in "${ALL_PORTS[@]}"; do
  [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] || busy+=("$port")
done
[ ${#busy[@]} = 0 ] || die "ports still bound after stopping: ${busy[*]} ($(ss -Hltnp | grep -E ":($(IFS='|'; echo "${busy[*]}"))\b" || true))"
