"""Multi-process training on one machine, run by tests/test_multihost.py in fresh interpreters.

  python tests/run_multihost.py worker PROCESS_ID NUM_PROCESSES PORT WORKDIR DATA_DIR OUT.npz
      one of the processes of a run joined by jax.distributed on localhost; trains the shared
      config, checkpoints, evaluates. Process 0 passes flags, the others environment variables,
      so that both ways of configuring cps_jax.distributed are exercised.
  python tests/run_multihost.py single WORKDIR DATA_DIR MULTI_WORKDIR OUT.npz
      one process with all its devices: trains the same config on the same global batches, then
      restores MULTI_WORKDIR's checkpoint (written by the processes above) and evaluates it.

Each writes OUT.npz (worker: process 0 only) with the final nets and the evaluation results.
"""

import os
import sys

from cps_jax import distributed


def config_for(data_dir):
    from configs import demo

    config = demo.get_config("runlocal")
    config.data.data_dir = data_dir
    # 4 devices in all: every global batch divides over them.
    config.batch_size_labeled = config.batch_size_unlabeled = config.eval_batch_size = 4
    # Runs on different device layouts agree to float rounding (an all-reduce across processes sums
    # in another order), and training must not amplify that: hard CPS pseudo labels would (an
    # argmax between two logits within rounding of each other flips), so the cross term is off and
    # the lr gentle. The unlabeled stream still runs through the nets (BN running statistics).
    # The CPS step itself is compared across device counts in tests/test_parallel.py.
    config.loss.cps_weight = 0.0
    config.optim.lr = 0.002
    return config


def nets_to_arrays(state, prefix):
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.nets))
    return {prefix + jax.tree_util.keystr(path): v for path, v in leaves}


def results_to_arrays(results, prefix):
    return {f"{prefix}/{net}/{k}": r[k] for net, r in results.items() for k in ("miou", "iou")}


def worker(process_id, num_processes, port, workdir, data_dir, out):
    address = f"localhost:{port}"
    if process_id == 0:
        joined = distributed.initialize(address, num_processes, process_id)
    else:
        environ = {
            "JAX_COORDINATOR_ADDRESS": address,
            "JAX_NUM_PROCESSES": str(num_processes),
            "JAX_PROCESS_ID": str(process_id),
        }
        joined = distributed.initialize(environ=environ)
    import jax

    from cps_jax.trainer import Trainer

    assert joined and jax.process_count() == num_processes, jax.process_count()
    assert jax.process_index() == process_id and jax.local_device_count() == 2
    trainer = Trainer(config_for(data_dir), workdir)
    results = trainer.train()
    arrays = {**nets_to_arrays(trainer.state, "nets"), **results_to_arrays(results, "eval")}
    if distributed.is_main_process():
        import numpy as np

        np.savez(out, **arrays)


def single(workdir, data_dir, multi_workdir, out):
    assert not distributed.initialize()  # nothing given, no cluster: one process
    import jax
    import numpy as np

    from cps_jax.commands import evaluate as cps_eval
    from cps_jax.trainer import Trainer, checkpoint_dir
    from cps_jax.checkpointing import Checkpointer

    assert jax.process_count() == 1 and jax.device_count() == 4
    config = config_for(data_dir)
    trainer = Trainer(config, workdir)
    results = trainer.train()
    # The checkpoint of the multi-process run, restored whole in this one process...
    checkpointer = Checkpointer(checkpoint_dir(multi_workdir), read_only=True)
    restored = checkpointer.restore(checkpointer.latest_step(), trainer.abstract_state())
    # ...and evaluated by the standalone evaluation (nets only).
    step, _, evaluated = cps_eval.evaluate_checkpoint(config, multi_workdir, step="latest")
    np.savez(
        out,
        step=step,
        **nets_to_arrays(trainer.state, "nets"),
        **nets_to_arrays(restored, "restored"),
        **results_to_arrays(results, "eval"),
        **results_to_arrays(evaluated, "restored_eval"),
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "worker":
        worker(int(args[0]), int(args[1]), int(args[2]), *args[3:])
    elif mode == "single":
        single(*args)
    else:
        sys.exit(f"unknown mode {mode!r}: expected worker or single")
