"""cps-export: writes one checkpoint's net(s) as a single model file, for cps-predict --model.

cps-export --workdir runs/demo --step best --net left --output model.cpsj

It uses the config the run was trained with (WORKDIR/config.json); a --config given instead must
agree with it on the nets' fields.
"""

from absl import flags

from cps_jax import config_checks, export, parallel, run_config
from cps_jax.commands import runner
from cps_jax.errors import ConfigError
from cps_jax.restore import restore_nets

FLAGS = flags.FLAGS


def export_model(config, workdir: str, *, step="best", net: str = "left", output: str) -> str:
    """cps-export: one checkpoint's net(s) as a single model file (cps_jax.export); `config`
    None: the run's own (W/config.json)."""
    config_checks.check_workdir(workdir, write=False, exist=True)
    config = run_config.resolve(config, workdir)
    runner.banner(workdir)
    try:
        class_names, palette, label_ids = export.class_table(config.data)
        step, nets = restore_nets(config, workdir, len(class_names), parallel.make_mesh(), step)
        nets = export.select_nets(nets, net, f"the checkpoint at step {step}")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    model = export.Model(config, nets, class_names, palette, label_ids, step)
    export.save(model, output)
    print(f"Wrote {', '.join(nets)} net(s) of step {step} to {output}", flush=True)
    return output


def define_flags():
    runner.define_workdir("The run's directory (its checkpoints).")
    runner.define_step()
    runner.define_net()
    flags.DEFINE_string("output", None, "The model file to write.")
    runner.define_config("A config file instead of the run's own (WORKDIR/config.json).")


def _main(argv):
    del argv
    runner.require("workdir", "output")
    export_model(FLAGS.config, FLAGS.workdir, step=FLAGS.step, net=FLAGS.net, output=FLAGS.output)


def main():
    runner.run_command(_main, __doc__, define_flags)


if __name__ == "__main__":
    main()
