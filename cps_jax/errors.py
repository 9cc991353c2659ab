"""The errors a user can fix, which the console scripts print as one line without a traceback."""


class ConfigError(ValueError):
    """A config, flag or input file that is wrong in a way the user can fix."""
