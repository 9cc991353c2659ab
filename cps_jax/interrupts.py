"""Stopping a run on request: SIGTERM (the preemption notice of TPU VMs and SLURM) and Ctrl-C.

SIGTERM asks the trainer to stop after the step in hand: it saves that step and exits with
status 143 (128 + SIGTERM). Ctrl-C stops it at once, but a checkpoint being written is finished
first; exit status 130 (128 + SIGINT).

One process: a handler of its own sets a flag that the loop reads every step (no device sync).
Several: JAX's preemption service catches SIGTERM on any host and names a step that every
process reaches, so that all of them save the same one.
"""

import contextlib
import signal
import threading

import jax
from jax.experimental import multihost_utils

from cps_jax.errors import RunError


class Stopped(RunError):
    """The run stopped on request; the message says where and which checkpoint holds it."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


SIGTERM_STATUS = 128 + signal.SIGTERM
SIGINT_STATUS = 128 + signal.SIGINT


@contextlib.contextmanager
def sigint_deferred():
    """Ctrl-C inside the block raises KeyboardInterrupt at its end, not in its middle: a
    checkpoint save cut short there would be left half written (its rename to the final name is
    done by the caller's thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)  # as if it came now, to whatever handles it


class StopOnSigterm:
    """`with StopOnSigterm() as stop:` ... `stop.requested(step)` every step."""

    def __init__(self):
        self._flag = False
        self._previous = None

    def _handler(self, signum, frame):
        self._flag = True

    def __enter__(self):
        # Signals are the main thread's; elsewhere (a trainer run in a thread) none is caught.
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def requested(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self._flag
        try:
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:  # no preemption service in this cluster: nothing to stop for
            return False
