#!/usr/bin/env bash
# Train and evaluate on a Cloud TPU VM pod slice: create it, put the code on every worker, run
# cps-train then cps-eval on all workers at once (JAX joins them: one process per worker), stream
# the output here, and delete the slice at the end (also after a failure) unless --keep.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: launch/tpu_pod.sh [--dry-run] --name NAME --zone ZONE --accelerator-type TYPE
                         [--version RUNTIME] [--project PROJECT] [--spot] [--keep]
                         [--existing] [--git URL[@REF]]
                         CONFIG WORKDIR [--config.FIELD=VALUE ...]

  --name               TPU VM name
  --zone               e.g. us-central2-b
  --accelerator-type   a pod slice, e.g. v4-32 (16 chips, 4 workers) or v5litepod-16
  --version            TPU VM runtime (default: tpu-ubuntu2204-base)
  --project            Google Cloud project (default: gcloud's configured one)
  --spot               create a Spot slice
  --keep               do not delete the slice at the end
  --existing           use an existing slice: no create, no delete
  --git URL[@REF]      clone the code on every worker instead of copying this checkout
  --dry-run            print the commands instead of running them
  CONFIG               a config file of this repository, with its :arg suffix
                       (configs/demo.py:split=1/16)
  WORKDIR              checkpoints, logs and images. Every worker saves its part of each
                       checkpoint there, so it must be one directory that all workers see at the
                       same path (a Filestore / NFS mount, or a gcsfuse-mounted bucket); an
                       existing run resumes from it. A relative path is relative to the code
                       directory on the workers.

The batch sizes in the config are global (over all chips); see the README for the lr rule.
TXT
}

dry_run=0 keep=0 existing=0 spot=0
name="" zone="" accelerator="" version="tpu-ubuntu2204-base" project="" git_url=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --keep) keep=1; shift ;;
    --existing) existing=1; shift ;;
    --spot) spot=1; shift ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --zone) zone=${2:?--zone needs a value}; shift 2 ;;
    --accelerator-type) accelerator=${2:?--accelerator-type needs a value}; shift 2 ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --project) project=${2:?--project needs a value}; shift 2 ;;
    --git) git_url=${2:?--git needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -lt 2 || -z "$name" || -z "$zone" ]]; then usage >&2; exit 2; fi
if [[ -z "$accelerator" ]] && (( ! existing )); then
  echo "error: --accelerator-type is needed to create a slice (or pass --existing)" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2

quote() {  # shell quoting that stays readable: 'a b' rather than a\ b
  local words=() word
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then words+=("$word")
    else words+=("'${word//\'/\'\\\'\'}'"); fi
  done
  echo "${words[*]}"
}

run() {
  if (( dry_run )); then quote "$@"; else "$@"; fi
}

tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
if [[ -n "$project" ]]; then where+=(--project="$project"); fi

on_all_workers() {  # a shell command line, run on every worker at once; their output streams here
  run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$1"
}

archive="" delete_at_exit=0
# shellcheck disable=SC2317,SC2329  # invoked by the trap
cleanup() {
  if [[ -n "$archive" && -f "$archive" ]]; then rm -f "$archive"; fi
  if (( delete_at_exit )); then run "${tpu[@]}" delete "$name" "${where[@]}" --quiet; fi
}
trap cleanup EXIT

if (( ! existing )); then
  create=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator"
          --version="$version")
  if (( spot )); then create+=(--spot); fi
  run "${create[@]}"
  if (( ! keep )); then delete_at_exit=1; fi
fi

# Expanded on the workers, hence single quotes.
# shellcheck disable=SC2016
code_dir='$HOME/cps_jax' venv='$HOME/cps_venv' uv='$HOME/.local/bin/uv'
if [[ -n "$git_url" ]]; then
  url=${git_url%@*} ref=""
  if [[ "$git_url" == *@* ]]; then ref=${git_url##*@}; fi
  fetch="rm -rf $code_dir && git clone $(quote "$url") $code_dir"
  if [[ -n "$ref" ]]; then fetch+=" && git -C $code_dir checkout $(quote "$ref")"; fi
else
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  archive=cps_jax_code.tar.gz
  if (( ! dry_run )); then archive=$(mktemp -t cps_jax_code.XXXXXX); fi
  run tar -czf "$archive" -C "$repo" --exclude=.git --exclude=.venv --exclude=runs --exclude=data \
    --exclude=__pycache__ --exclude=.pytest_cache .
  run "${tpu[@]}" scp "$archive" "$name:cps_jax_code.tar.gz" "${where[@]}" --worker=all
  fetch="rm -rf $code_dir && mkdir -p $code_dir && tar -xzf cps_jax_code.tar.gz -C $code_dir"
fi
# JAX needs Python >= 3.11, newer than some TPU VM images have: uv brings its own. jax[tpu] resolves
# within the jax versions that setup.cfg allows.
install="python3 -m pip install -q --user uv && rm -rf $venv && $uv venv -q --python 3.11 $venv"
install+=" && $uv pip install -q --python $venv/bin/python -e $code_dir 'jax[tpu]'"
on_all_workers "$fetch && $install"

train=(cps-train --config="$config" --workdir="$workdir" "$@")
evaluate=(cps-eval --config="$config" --workdir="$workdir" --step=best "$@")
on_all_workers "cd $code_dir && $venv/bin/$(quote "${train[@]}")"
on_all_workers "cd $code_dir && $venv/bin/$(quote "${evaluate[@]}")"
