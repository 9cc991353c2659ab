"""cps-train: trains a config's nets, checkpointing them in a workdir (an existing run resumes).

cps-train --config configs/demo.py --workdir runs/demo [--config.total_steps=200 ...]
"""

import time

from absl import flags

from cps_jax import config_checks, distributed, run_config
from cps_jax.commands import runner
from cps_jax.trainer import Trainer, checkpoint_dir
from cps_jax.workdir_lock import WorkdirLock

FLAGS = flags.FLAGS


def train(config, workdir: str) -> dict:
    start = time.perf_counter()
    config_checks.check_config(config)
    config_checks.check_workdir(workdir)
    # Before any work: a second run on this workdir would mix its checkpoints with this one's.
    lock = distributed.on_main_process(lambda: WorkdirLock(workdir).acquire(), "workdir lock")
    try:
        run_config.check_resume(config, workdir, checkpoint_dir(workdir))
        runner.banner(workdir)
        results = Trainer(config, workdir).train()
    finally:
        if lock is not None:
            lock.release()
    distributed.print_main(f"Done in {time.perf_counter() - start:.0f}s.")
    return results


def define_flags():
    runner.define_config()
    runner.define_workdir()
    runner.define_multihost()


def _main(argv):
    del argv
    runner.require("config", "workdir")
    runner.init_distributed()
    train(FLAGS.config, FLAGS.workdir)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
