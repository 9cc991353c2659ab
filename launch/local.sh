#!/usr/bin/env bash
# Train, then evaluate the best checkpoint, on this machine (one process, all its devices).
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: launch/local.sh [--dry-run] CONFIG WORKDIR [--config.FIELD=VALUE ...]

  CONFIG    a config file, optionally with its :arg suffix (configs/demo.py:split=1/16)
  WORKDIR   checkpoints, logs and images go here; an existing run resumes
  --dry-run print the commands instead of running them
TXT
}

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
if [[ $# -lt 2 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 2; fi
config=$1 workdir=$2
shift 2

run() {
  if (( dry_run )); then printf '%q ' "$@"; echo; else "$@"; fi
}

run cps-train --config="$config" --workdir="$workdir" "$@"
run cps-eval --config="$config" --workdir="$workdir" --step=best "$@"
