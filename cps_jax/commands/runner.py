"""What the commands share: their flags' definers, --help, flag parsing, and the exit statuses.

absl's flags are process-global, so a command defines its own only when it runs (its main()
calls `run_command` with its definer): each console script parses, and --help lists, its own
flags and no other command's.
"""

import atexit
import difflib
import errno
import os
import sys
import textwrap

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from cps_jax import console, distributed, interrupts
from cps_jax.data.archives import DataError
from cps_jax.errors import ConfigError, RunError

FLAGS = flags.FLAGS

# Exit status of a wrong config or flag, as absl's usage errors; other errors a user can act on
# (an input file, a diverged run) exit 1. Each is one line, without a traceback.
USAGE_STATUS = 2
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# The flags more than one command takes.


def define_config(help_text: str = "Path to a config file, e.g. configs/demo.py[:arg].") -> None:
    config_flags.DEFINE_config_file(
        "config",
        None,
        help_text + " Its fields can be overridden: --config.FIELD=VALUE.",
        lock_config=True,
    )


def define_workdir(help_text: str = "Directory for checkpoints, logs and images.") -> None:
    flags.DEFINE_string("workdir", None, help_text)


def define_step(help_text: str = "The checkpoint: latest, best, or a step number.") -> None:
    flags.DEFINE_string("step", "latest", help_text)


def define_net() -> None:
    flags.DEFINE_enum("net", "left", ["left", "right", "both"], "Which net (both: ensemble).")


def define_multihost() -> None:
    """Flags of a run over several hosts, one process each; none is needed on Cloud TPU pod
    slices, SLURM and Open MPI, where JAX finds its peers itself."""
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-host: HOST:PORT of process 0 (else JAX_COORDINATOR_ADDRESS); not needed on Cloud "
        "TPU pod slices, SLURM or Open MPI.",
    )
    flags.DEFINE_integer(
        "num_processes", None, "Multi-host: number of processes (else JAX_NUM_PROCESSES)."
    )
    flags.DEFINE_integer(
        "process_id", None, "Multi-host: this process, 0..N-1 (else JAX_PROCESS_ID)."
    )


def require(*names) -> None:
    missing = [n for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise app.UsageError("missing required flag(s): " + ", ".join(f"--{n}" for n in missing))


def init_distributed() -> None:
    """Joins the other processes of a multi-host run (no-op for one process), before any JAX use."""
    try:
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def banner(workdir: str) -> None:
    distributed.print_main(
        f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es); workdir {os.path.abspath(workdir)}"
    )


# --help: absl's lists only the flags of the __main__ module (for a console script: none) and
# exits 1; a command's lists its usage and its own flags, and exits 0.

_command_help = None  # the text of the running command's --help; None: absl's own


def _describe(flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = flag.help + ("" if flag.default is None else f" (default: {flag.default_as_str})")
    return textwrap.fill(text, width=100, initial_indent=f"  {name}: ", subsequent_indent="      ")


def _help_text(usage: str, own_flags: list) -> str:
    return "\n".join(
        [
            textwrap.dedent(usage).strip(),
            "",
            "Flags:",
            *map(_describe, own_flags),
            "  -h, --help: show this help.",
            "",
            "--verbosity=0 shows the libraries' INFO logs; --helpfull lists absl's flags too.",
        ]
    )


class _HelpFlag(flags.BooleanFlag):
    def __init__(self, name: str, short_name: str | None = None):
        super().__init__(name, False, "show this help", short_name=short_name)

    def parse(self, argument):
        if self._parse(argument):
            try:
                print(_command_help, flush=True)
            except BrokenPipeError:  # `cps-train --help | head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)


def _use_command_help() -> None:
    """Puts the command's --help (and -h, --helpshort) in place of absl's."""
    if _command_help is None:
        return
    for name in ("help", "?", "helpshort", "h"):
        if name in FLAGS:
            delattr(FLAGS, name)
    flags.DEFINE_flag(_HelpFlag("help", "h"))
    flags.DEFINE_flag(_HelpFlag("helpshort"))


def run_command(main, usage: str, define_flags) -> None:
    """A console script: defines the command's flags (only those), then runs `main` as `run`.
    `usage`: the command's one-paragraph usage (its module docstring), the head of its --help."""
    global _command_help
    known = set(FLAGS)  # absl's own, and any that an imported library defined
    define_flags()
    own = [FLAGS[n] for n in FLAGS if n not in known and FLAGS[n].name == n]  # long names only
    _command_help = _help_text(usage, own)
    run(main)


# Parsing and running.


def parse_flags(argv):
    """absl's parser, with unknown config fields reported as a usage error instead of a traceback.

    The libraries' INFO logs (checkpointing, data sets, backends: a hundred lines per run) would
    bury the progress lines, so warnings and errors only unless --verbosity is given (0: INFO);
    and their warnings that no user can act on are dropped (cps_jax/console.py).
    """
    _use_command_help()
    try:
        remaining = FLAGS(argv)
        if not FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        console.install()
        return remaining
    except (AttributeError, KeyError) as error:
        fail(_unknown_config_field(argv, error), USAGE_STATUS)
    except flags.Error as error:
        fail(error, USAGE_STATUS)


def _config_file_of(argv):
    """The config that --config in `argv` names, without its overrides (None if it cannot load)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
        else:
            continue
        try:
            return FLAGS["config"].parser.parse(spec)
        except Exception:  # the override error is the one to report, not this one
            return None
    return None


def _unknown_config_field(argv, error) -> str:
    """Which --config.<path> flag names a field the config does not have, and what it has."""
    config = _config_file_of(argv)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        flag = arg.split("=")[0]
        node, parent = config, "config"
        for key in flag[len("--config.") :].split("."):
            if not isinstance(node, ml_collections.ConfigDict):
                return f"{flag}: {parent} is {node!r}, not a section with fields"
            if key not in node:
                fields = sorted(node.keys())
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"its fields: {', '.join(fields)}"
                if close:
                    hint = f"did you mean {close[0]!r}?"
                return f"{flag}: {parent} has no field {key!r} ({hint})"
            node, parent = node[key], f"{parent}.{key}"
    message = " ".join(str(error).replace("\\n", "\n").replace("\\'", "").split())
    return f"unknown config field: {message}"


def fail(message, status: int, prefix: str = "error: "):
    print(f"{prefix}{message}", file=sys.stderr, flush=True)
    # Out at once after the exit handlers, past the interpreter's teardown: reads that a failed
    # checkpoint restore abandoned may still end there, each printing a traceback.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(main):
    """app.run(main) with the flags parsed by `parse_flags`, and the errors a user can act on
    printed as one line with their exit status."""
    try:
        app.run(main, flags_parser=parse_flags)
    except ConfigError as error:
        fail(error, USAGE_STATUS)
    except interrupts.Stopped as stopped:  # on request: not an error
        fail(stopped, stopped.exit_status, prefix="")
    except (DataError, RunError) as error:
        fail(error, 1)
    except KeyboardInterrupt:  # before the trainer's loop, which says where it stopped
        fail("interrupted", interrupts.SIGINT_STATUS, prefix="")
    except OSError as error:  # a full disk, for the logs or results (checkpoints say so above)
        if error.errno not in _DISK_FULL:
            raise
        fail(f"{error.filename or 'writing'}: {error.strerror}", 1)
