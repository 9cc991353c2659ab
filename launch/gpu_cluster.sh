#!/usr/bin/env bash
#SBATCH --job-name=cps_jax
#SBATCH --ntasks-per-node=1
#SBATCH --output=cps_jax-%j.out
# Train, then evaluate the best checkpoint, on a multi-node GPU cluster: one JAX process per node,
# using all of that node's GPUs, joined through JAX's coordinator (process 0 runs it). The script
# sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID for each process.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage:
  SLURM: submit from the repository root, with cps_jax installed in the active environment
    sbatch --nodes=N --gpus-per-node=G launch/gpu_cluster.sh CONFIG WORKDIR [--config.F=V ...]
  (or run it inside an allocation: salloc --nodes=N ..., then launch/gpu_cluster.sh ...).
  The coordinator is the job's first node, on port --port (default: derived from the job id).

  Any other cluster: run on every node, with R = 0 .. N-1 and HOST the address of node 0
    launch/gpu_cluster.sh --coordinator HOST:PORT --num-nodes N --node-rank R CONFIG WORKDIR [...]

Options:
  --coordinator HOST:PORT  the coordinator (node 0); SLURM default: first node of the job
  --num-nodes N            number of nodes (one process each); SLURM default: the job's nodes
  --node-rank R            this node's process id: run here, without srun
  --port PORT              coordinator port under SLURM
  --dry-run                print the commands instead of running them
  CONFIG                   a config file, with its :arg suffix (configs/demo.py:split=1/16)
  WORKDIR                  checkpoints, logs and images; every process writes its part of each
                           checkpoint there, so it must be on a file system all nodes share, at the
                           same path; an existing run resumes from it

The batch sizes in the config are global (over all GPUs); see the README for the lr rule.
TXT
}

dry_run=0 coordinator="" num_nodes="" node_rank="" port=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --coordinator) coordinator=${2:?--coordinator needs HOST:PORT}; shift 2 ;;
    --num-nodes) num_nodes=${2:?--num-nodes needs a value}; shift 2 ;;
    --node-rank) node_rank=${2:?--node-rank needs a value}; shift 2 ;;
    --port) port=${2:?--port needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
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

if [[ -n "$node_rank" ]]; then
  # Per-node launcher: this process only.
  if [[ -z "$coordinator" || -z "$num_nodes" ]]; then
    echo "error: --node-rank needs --coordinator HOST:PORT and --num-nodes N" >&2
    exit 2
  fi
  for command in cps-train cps-eval; do
    extra=()
    if [[ $command == cps-eval ]]; then extra=(--step=best); fi
    run env JAX_COORDINATOR_ADDRESS="$coordinator" JAX_NUM_PROCESSES="$num_nodes" \
      JAX_PROCESS_ID="$node_rank" "$command" --config="$config" --workdir="$workdir" \
      "${extra[@]}" "$@"
  done
  exit 0
fi

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "error: not inside a SLURM job: submit with sbatch, or pass --node-rank (see --help)" >&2
  exit 2
fi
num_nodes=${num_nodes:-${SLURM_JOB_NUM_NODES:?SLURM_JOB_NUM_NODES is not set}}
if [[ -z "$coordinator" ]]; then
  host=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?SLURM_JOB_NODELIST is not set}" | head -n 1)
  # A port in the upper ephemeral range, the same on every node of the job.
  coordinator="$host:${port:-$(( 61440 + SLURM_JOB_ID % 4096 ))}"
fi
for command in cps-train cps-eval; do
  extra=()
  if [[ $command == cps-eval ]]; then extra=(--step=best); fi
  # One task per node; SLURM_PROCID, set by srun for each task, is its process id. All of the
  # node's GPUs stay visible to it (JAX uses every local device).
  # shellcheck disable=SC2016  # $SLURM_PROCID expands in each task, not here
  run srun --nodes="$num_nodes" --ntasks="$num_nodes" --ntasks-per-node=1 \
    --export=ALL,JAX_COORDINATOR_ADDRESS="$coordinator",JAX_NUM_PROCESSES="$num_nodes" \
    bash -c 'export JAX_PROCESS_ID=$SLURM_PROCID; exec "$@"' _ \
    "$command" --config="$config" --workdir="$workdir" "${extra[@]}" "$@"
done
