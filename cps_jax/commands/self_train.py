"""cps-self-train: rounds of self-training from a labeled source to an unlabeled target, with
class-balanced pseudo labels (cps_jax/self_training.py); a stopped run continues where it stopped.

cps-self-train --config configs/adapt.py:method=self_training --workdir runs/st [--rounds 3]

The config names the target (config.data) and the source (config.data.source); each round trains
config.total_steps steps.
"""

from absl import flags

from cps_jax import config_checks, datasets, parallel, run_config, self_training
from cps_jax.commands import runner
from cps_jax.restore import restore_nets
from cps_jax.trainer import Trainer

FLAGS = flags.FLAGS


def _restore(workdir: str, num_classes: int) -> dict:
    config = run_config.resolve(None, workdir)
    _, nets = restore_nets(config, workdir, num_classes, parallel.make_mesh(), "latest")
    return nets[next(iter(nets))]


def self_train(config, workdir: str, rounds: int | None = None) -> list:
    config_checks.check_config(config)
    config_checks.check_self_training(config)
    config_checks.check_workdir(workdir)
    runner.banner(workdir)
    rounds = int(config.adapt.rounds if rounds is None else rounds)
    data = datasets.load_shared(config.data)

    def train_run(run_config_, run_dir):
        return Trainer(run_config_, run_dir).train()

    summary = self_training.run_rounds(
        config, workdir, rounds, train_run=train_run, data=data, restore=_restore
    )
    for entry in summary:
        line = f"round {entry['round']}: target mIoU {100 * entry['miou']:.2f}"
        labels = entry.get("pseudo_labels")
        if labels:
            line += f"; pseudo labels p={labels['portion']:.2f}, kept {100 * labels['kept']:.1f}%"
            if "miou" in labels:
                line += f", their accuracy {100 * labels['accuracy']:.2f} mIoU {100 * labels['miou']:.2f}"
        print(line, flush=True)
    return summary


def define_flags():
    runner.define_config()
    runner.define_workdir()
    flags.DEFINE_integer("rounds", None, "Rounds of pseudo-labelling and retraining (config.adapt.rounds).")


def _main(argv):
    del argv
    runner.require("config", "workdir")
    self_train(FLAGS.config, FLAGS.workdir, FLAGS.rounds)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
