"""What the console scripts keep off the console: the libraries' messages that no user can act on.

Each filter matches one known message (or the leftovers of one known failure) and nothing else,
so that a user's own warnings and errors, and the libraries' real ones, still show.
"""

import logging
import os
import sys
import warnings

# Log messages dropped, by how they start.
NOISE = (
    # TFDS, on every run without OpenCV (PIL decodes the images just as well).
    "OpenCV is not installed",
    # TFDS, whenever a data set is built from its fields (every data set here is).
    "Using custom data configuration",
    # Orbax, on every save without evaluation metrics (only evaluation steps carry them).
    "Requested `tracked_metric`; did not provide metrics",
    # Orbax, for read-only managers (cps-eval, cps-export, cps-predict).
    "CheckpointManagerOptions.read_only=True",
    "Given directory is read only",
    # Orbax, for a step folder without its metadata: the trainer's own warning names it.
    "Metadata file does not exist",
    # tensorboardX, for a NaN scalar (the IoU of a class absent from an interval, say).
    "NaN or Inf found in input tensor",
)
# Python's reports of the reads a failed Orbax restore abandons, when they are collected (often
# at exit): a flood of tracebacks after the one line that said which checkpoint cannot be read.
_LIBRARY_DIRS = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorstore{os.sep}")
_ABANDONED = ("Future exception was never retrieved", "Task exception was never retrieved")


def _from_checkpoint_library(error) -> bool:
    tb = getattr(error, "__traceback__", None)
    while tb is not None:
        if any(d in tb.tb_frame.f_code.co_filename for d in _LIBRARY_DIRS):
            return True
        tb = tb.tb_next
    text = str(error)
    return any(name in text for name in ("TensorStore", "OCDBT", "orbax"))


def _failed_save_report(record: logging.LogRecord, message: str) -> bool:
    """Orbax's errors (with tracebacks, from each of its threads) of a save that failed, which
    checkpointing.Unwritable reports in one line."""
    if record.levelno < logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname:
        return False
    return "raised an exception" in message or "save" in message.lower()


class NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(NOISE) or _failed_save_report(record, message):
            return False
        if record.name == "asyncio" and message.startswith(_ABANDONED):
            error = record.exc_info[1] if record.exc_info else None
            return not (_from_checkpoint_library(error) or _from_checkpoint_library(message))
        return True


def _abandoned(error) -> bool:
    """An error of the reads a failed restore abandoned: raised in the checkpoint libraries, or
    asyncio's, when their results reach the event loop that the failed restore closed."""
    loop_closed = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    return loop_closed or _from_checkpoint_library(error)


def _unraisable_hook(previous):
    def hook(unraisable):
        if not _abandoned(unraisable.exc_value):
            previous(unraisable)

    return hook


def _excepthook(previous):
    # TensorStore's threads report the errors of their callbacks through sys.excepthook.
    def hook(kind, error, tb):
        if not _abandoned(error):
            previous(kind, error, tb)

    return hook


_installed = False


def install() -> None:
    """Installs the filters (once) on every handler of the root logger (absl's among them) and on
    the asyncio logger, and the hooks for abandoned checkpoint reads."""
    global _installed
    if _installed:
        return
    _installed = True
    noise = NoiseFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(noise)
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(noise)
    logging.getLogger("asyncio").addFilter(noise)
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    sys.excepthook = _excepthook(sys.excepthook)
    warnings.filterwarnings(
        "ignore", message=r"coroutine '\w+' was never awaited", category=RuntimeWarning
    )
