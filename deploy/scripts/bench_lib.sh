# Shared by the A/B bench scripts that start their own services (auth_overhead.sh,
# gateway_cpu.sh). Sourced, not run.
# shellcheck shell=bash

# Waits up to 240 s until /healthz answers on every admin port given; on timeout shows the
# last lines of the logs in $1 and exits.
wait_healthy() { # log dir, admin port...
  local logs=$1 ready="" port
  shift
  for _ in $(seq 1 240); do
    ready=1
    for port in "$@"; do
      curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || ready=""
    done
    [[ -n $ready ]] && return 0
    sleep 1
  done
  tail -n 5 "$logs"/*.log >&2
  echo "services did not become healthy" >&2
  exit 1
}
