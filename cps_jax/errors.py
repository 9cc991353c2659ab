"""The errors a user can act on, which the console scripts print as one line without a traceback."""


class ConfigError(ValueError):
    """A config, flag or input file that is wrong in a way the user can fix (exit status 2)."""


class RunError(RuntimeError):
    """A run that cannot go on as asked: it diverged, or its checkpoints cannot be read, or they
    cannot be written (exit status 1)."""
