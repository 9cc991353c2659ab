"""Orbax checkpoints of the train state and the data iterators: async, atomic, resumable.

Kept: the latest `keep` checkpoints plus the best one by `miou` (saved with evaluation metrics).
Every process calls save / restore; grain writes one iterator state per process.
"""

import contextlib
import os
import re
import shutil
import sys

import grain.checkpoint
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from cps_jax import interrupts
from cps_jax.errors import RunError

BEST_METRIC = "miou"
# Where a resumed run moves the checkpoints newer than the one it resumed from that could not be
# read: out of the way of the new ones (and of the keep-the-latest-N policy), not deleted.
UNREADABLE_DIR = "unreadable_checkpoints"


class Unreadable(RunError):
    """A checkpoint that cannot be restored: truncated, empty, incomplete, or non-finite."""


class Unwritable(RunError):
    """A checkpoint that could not be written (a full disk, say); its unfinished files are gone."""


# Orbax writes a step under `<step><TMP_MARK>...` and renames it when it is complete.
TMP_MARK = ".orbax-checkpoint-tmp"


def failure_reason(error: Exception) -> str:
    """The gist of a restore error on one line: its root cause (which names the file), cut short
    (TensorStore's messages run to pages)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split()) or type(error).__name__
    text = text.split(" See full TensorStore details")[0]
    # The file comes first: TensorStore names it only at the end of a long message.
    named = re.search(r'local file "([^"]+)"', text)
    if named:
        text = f"{named.group(1)}: {text.replace(named.group(0), 'it')}"
    return text if len(text) <= 320 else text[:317] + "..."


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.array(True)]))


def check_finite(tree):
    """`tree` unless an array of it holds NaN or inf (saved by a diverged run): then Unreadable."""
    if not bool(_all_finite(tree)):
        raise Unreadable("it holds non-finite values, saved by a diverged run")
    return tree


def restore_newest(steps, restore, directory: str):
    """(step, restore(step), [(unreadable step, reason)]) for the first of `steps` that restores;
    Unreadable naming each step's reason if none does."""
    failures = []
    for step in steps:
        try:
            return step, restore(step), failures
        except Exception as error:  # Orbax, TensorStore and grain raise many types
            failures.append((step, failure_reason(error)))
    if len(failures) == 1:
        [(step, reason)] = failures
        raise Unreadable(f"checkpoint step {step} in {directory} cannot be read: {reason}")
    detail = "; ".join(f"step {s}: {r}" for s, r in failures)
    raise Unreadable(f"no checkpoint in {directory} can be read ({detail})")


def write_failure_reason(error: Exception) -> str:
    """Why a write failed, as the system says it ('No space left on device'), else its gist."""
    chain = [error]
    while (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for e in reversed(chain):
        if isinstance(e, OSError) and e.errno:
            return f"{os.strerror(e.errno)} (errno {e.errno})"
        code = re.search(r"\[os_error_code='(\d+)'\]", str(e))  # TensorStore's form
        if code:
            return f"{os.strerror(int(code[1]))} (errno {code[1]})"
    return failure_reason(error)


def warn(message: str) -> None:
    if jax.process_index() == 0:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def move_aside(directory: str, step: int) -> str:
    """Moves checkpoint `step` out of `directory`, into UNREADABLE_DIR beside it; its new path."""
    target = os.path.join(os.path.dirname(directory), UNREADABLE_DIR, str(step))
    suffix = 1
    while os.path.exists(target):
        target = os.path.join(os.path.dirname(directory), UNREADABLE_DIR, f"{step}.{suffix}")
        suffix += 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(os.path.join(directory, str(step)), target)
    return target


def _restore_args(abstract_tree):
    return ocp.args.PyTreeRestore(
        item=abstract_tree, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_tree)
    )


class Checkpointer:
    def __init__(self, directory: str, *, keep: int = 2, read_only: bool = False):
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(keep),
                # Ascending sort by mIoU keeps the last (highest) one.
                checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[BEST_METRIC],
                    reverse=False,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=None if read_only else policy,
            read_only=read_only,
            best_fn=lambda m: m[BEST_METRIC],
            best_mode="max",
            enable_async_checkpointing=True,
            cleanup_tmp_directories=not read_only,
        )
        self.manager = ocp.CheckpointManager(
            directory, item_names=("state", "data"), options=options
        )

    @property
    def directory(self) -> str:
        return os.fspath(self.manager.directory)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def resolve_step(self, which: str | int) -> int:
        """'latest', 'best' or a step number -> an existing step, with a clear error otherwise."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        if which == "latest":
            return self.latest_step()
        if which == "best":
            best = self.best_step()
            if best is None:
                raise FileNotFoundError(
                    f"no checkpoint with evaluation metrics in {self.manager.directory}"
                )
            return best
        step = int(which)
        if step not in steps:
            raise FileNotFoundError(
                f"no checkpoint at step {step} in {self.manager.directory}; available: {steps}"
            )
        return step

    def restore_latest(self, abstract_state, data_iterator=None):
        """(step, state) of the newest checkpoint that restores whole and finite, restoring the
        data iterator in place too; None without checkpoints. The newer ones that cannot be read
        are moved aside (UNREADABLE_DIR), each with a warning line; Unreadable if none can."""
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            return None
        step, state, failures = restore_newest(
            steps,
            lambda s: check_finite(self.restore(s, abstract_state, data_iterator)),
            self.directory,
        )
        for bad, reason in failures:
            moved = move_aside(self.directory, bad) if jax.process_index() == 0 else None
            warn(
                f"checkpoint step {bad} in {self.directory} cannot be read ({reason}); "
                f"moved it to {moved}"
            )
        if failures:
            if jax.process_count() > 1:
                from cps_jax import distributed

                distributed.barrier("unreadable checkpoints moved")
            self.manager.reload()
        return step, state

    def save(self, step: int, state, data_iterator=None, metrics: dict | None = None):
        """Starts writing checkpoint `step` (asynchronously: a failure shows at the next save or
        wait, as Unwritable)."""
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        with self._writing(step), interrupts.sigint_deferred():
            self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics)

    @contextlib.contextmanager
    def _writing(self, step: int | None):
        """Turns a failed write into Unwritable, naming the step and the reason, once the
        unfinished files are removed: a full disk is not left full by them."""
        try:
            yield
        except Exception as error:
            with contextlib.suppress(Exception):  # the failed save's other writers end first
                self.manager.wait_until_finished()
            removed = self._remove_unfinished() if jax.process_index() == 0 else []
            steps = sorted({int(n.split(".")[0]) for n in removed if n.split(".")[0].isdigit()})
            which = ", ".join(map(str, steps)) or ("" if step is None else str(step))
            done = f"; removed its unfinished files ({', '.join(removed)})" if removed else ""
            raise Unwritable(
                f"cannot write checkpoint step {which} in {self.directory}: "
                f"{write_failure_reason(error)}{done}; free some space and run the same command "
                "to resume"
            ) from None

    def _remove_unfinished(self) -> list[str]:
        if not os.path.isdir(self.directory):
            return []
        removed = [name for name in sorted(os.listdir(self.directory)) if TMP_MARK in name]
        for name in removed:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        return removed

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the whole state into `abstract_state` (ShapeDtypeStructs with shardings) and, in place,
        the data iterator."""
        items = {"state": _restore_args(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def restore_nets(self, step: int, abstract_nets):
        """Restores only the nets (TrainState.nets: params and BN statistics), not the optimizer
        state nor anything else of the train state."""
        abstract = {"nets": abstract_nets}
        args = ocp.args.PyTreeRestore(
            item=abstract,
            partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        )
        return self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]["nets"]

    def metrics(self, step: int) -> dict | None:
        return self.manager.metrics(step)

    def wait(self):
        with self._writing(None), interrupts.sigint_deferred():
            self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


def abstract_like(tree, sharding: jax.sharding.Sharding | None = None):
    """ShapeDtypeStructs for `tree` (arrays or ShapeDtypeStructs), optionally placed with `sharding`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
