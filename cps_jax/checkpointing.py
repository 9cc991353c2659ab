"""Orbax checkpoints of the train state and the data iterators: async, atomic, resumable.

Kept: the latest `keep` checkpoints plus the best one by `miou` (saved with evaluation metrics).
Every process calls save / restore; grain writes one iterator state per process.
"""

import grain.checkpoint
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = "miou"


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

    def save(self, step: int, state, data_iterator=None, metrics: dict | None = None):
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics)

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the whole state into `abstract_state` (ShapeDtypeStructs with shardings) and, in place,
        the data iterator."""
        items = {"state": _restore_args(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def restore_subtree(self, step: int, abstract_subtree):
        """Restores only the leaves named in `abstract_subtree` (e.g. the nets' params, not the optimizer)."""
        args = ocp.args.PyTreeRestore(
            item=abstract_subtree,
            partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_subtree),
        )
        return self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]

    def metrics(self, step: int) -> dict | None:
        return self.manager.metrics(step)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


def abstract_like(tree, sharding: jax.sharding.Sharding | None = None):
    """ShapeDtypeStructs for `tree` (arrays or ShapeDtypeStructs), optionally placed with `sharding`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
