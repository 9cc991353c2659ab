"""cps-eval: evaluates one or more checkpoints of a run, writing their results in its workdir.

cps-eval --workdir runs/demo [--step latest|best|N|best,latest] [--config configs/demo.py ...]

It uses the config the run was trained with (WORKDIR/config.json); a --config given instead must
agree with it on the nets' fields.
"""

import jax
from absl import flags

from cps_jax import config_checks, datasets, parallel, run_config
from cps_jax.commands import runner
from cps_jax.errors import ConfigError
from cps_jax.evaluate import Evaluator
from cps_jax.models.functional import net_graphdef
from cps_jax.restore import restore_nets
from cps_jax.trainer import write_results

FLAGS = flags.FLAGS


def evaluate_checkpoint(config, workdir: str, *, step="latest", split: str = "validation"):
    """(step, data, results) of one checkpoint."""
    (steps, results), data = _evaluate_steps(config, workdir, [step], split)
    return steps[0], data, results[0]


def _evaluate_steps(config, workdir: str, which: list, split: str):
    """([resolved steps], [results]) of each checkpoint named in `which`, one evaluator for all."""
    mesh = parallel.make_mesh()
    data = datasets.load_shared(config.data)
    evaluator = Evaluator.from_config(
        config, net_graphdef(config.model, data.num_classes), data, mesh, split=split
    )
    steps, done = [], {}
    for w in which:
        step, nets = restore_nets(config, workdir, data.num_classes, mesh, w)
        if step not in done:  # best and latest are often the same checkpoint
            done[step] = evaluator.run(nets)[0]
        steps.append(step)
    return (steps, [done[s] for s in steps]), data


def parse_steps(spec: str) -> list[str]:
    """'best,latest' -> ['best', 'latest']; each one latest, best or a step number."""
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    bad = [s for s in items if s not in ("latest", "best") and not s.isdigit()]
    if not items or bad:
        raise ConfigError(
            f"--step={spec!r}: expected latest, best, a step number, or several separated by "
            "commas (e.g. best,latest)"
        )
    return list(dict.fromkeys(items))


def evaluate(config, workdir: str, *, step="latest", split: str = "validation") -> dict:
    """cps-eval: {which: (step, results)} for each of `step` ('best,latest' evaluates both);
    `config` None: the run's own (W/config.json)."""
    which = parse_steps(step)
    config_checks.check_workdir(workdir, exist=True)
    config = run_config.resolve(config, workdir)
    config_checks.check_config(config)
    runner.banner(workdir)
    try:
        (steps, results), data = _evaluate_steps(config, workdir, which, split)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from error
    if jax.process_index() == 0:
        for s, r in dict(zip(steps, results)).items():
            write_results(workdir, data.class_names, r, step=s, name=f"eval_{split}_{s}")
        if len(which) > 1:
            print(
                "left mIoU: "
                + ", ".join(
                    f"{w} (step {s}) {100 * r['left']['miou']:.2f}"
                    for w, s, r in zip(which, steps, results)
                ),
                flush=True,
            )
    return {w: (s, r) for w, s, r in zip(which, steps, results)}


def define_flags():
    runner.define_workdir("The run's directory (its checkpoints, and where the results go).")
    runner.define_step(
        "The checkpoint: latest, best, or a step number; or several, separated by commas "
        "(best,latest)."
    )
    flags.DEFINE_string("split", "validation", "The split to evaluate.")
    runner.define_config("A config file instead of the run's own (WORKDIR/config.json).")
    runner.define_multihost()


def _main(argv):
    del argv
    runner.require("workdir")
    runner.init_distributed()
    evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step, split=FLAGS.split)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
