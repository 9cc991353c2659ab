"""The evaluator shared by training and the standalone `cps-eval`: every net of the state (left,
right) and, when there are two, their averaged-softmax ensemble, each scored by a confusion matrix
summed over the whole split."""

import functools

import jax
import jax.numpy as jnp

from cps_jax import input_pipeline, metrics, parallel
from cps_jax.state import apply_net


def nets_of(state) -> dict:
    """The evaluation view of a TrainState: params and BN statistics only."""
    return {
        name: {
            "params": getattr(state, name).params,
            "batch_stats": getattr(state, name).batch_stats,
        }
        for name in ("left", "right")
        if getattr(state, name, None) is not None
    }


def _eval_step(graphdef, num_classes: int, nets: dict, batch: dict):
    logits = {
        name: apply_net(graphdef, net["params"], net["batch_stats"], batch["image"], train=False)[0]
        for name, net in nets.items()
    }
    predictions = {name: jnp.argmax(l, -1) for name, l in logits.items()}
    if len(logits) > 1:
        probs = sum(jax.nn.softmax(l) for l in logits.values()) / len(logits)
        predictions["ensemble"] = jnp.argmax(probs, -1)
    weight = batch["weight"][:, None, None]
    confusion = {
        name: metrics.confusion_matrix(batch["mask"], p, num_classes, weight)
        for name, p in predictions.items()
    }
    return confusion, predictions


class Evaluator:
    """`run(nets)` -> ({net: {iou, miou, pixel_accuracy}}, prediction grid arrays for display)."""

    def __init__(
        self,
        graphdef,
        data,
        *,
        split: str,
        batch_size: int,
        mesh,
        worker_threads: int = 0,
        num_visualize: int = 0,
    ):
        self.data, self.split, self.mesh = data, split, mesh
        self.batch_size, self.worker_threads, self.num_visualize = (
            batch_size,
            worker_threads,
            num_visualize,
        )
        parallel.check_divisible(batch_size, mesh, "eval_batch_size")
        self._step = jax.jit(
            functools.partial(_eval_step, graphdef, data.num_classes),
            in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
            out_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
        )

    def run(self, nets: dict):
        source = getattr(self.data, self.split)
        batches = input_pipeline.eval_batches(
            source,
            batch_size=self.batch_size,
            num_classes=self.data.num_classes,
            split=f"{self.data.name}/{self.split}",
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            worker_threads=self.worker_threads,
        )
        total, shown = None, None
        for batch in batches:
            host_index = batch.pop("index")
            confusion, predictions = self._step(nets, parallel.global_batch(batch, self.mesh))
            total = confusion if total is None else jax.tree.map(jnp.add, total, confusion)
            if shown is None and self.num_visualize:
                shown = self._visual_sample(batch, predictions, host_index)
        total = jax.device_get(total)
        order = sorted(total, key=lambda name: name == "ensemble")  # nets first, then the ensemble
        return {name: metrics.segmentation_metrics(total[name]) for name in order}, shown

    def _visual_sample(self, batch, predictions, host_index):
        """The first few real examples of this process's first batch."""
        n = min(self.num_visualize, int((host_index >= 0).sum()))
        local = {k: parallel.process_local_rows(v)[:n] for k, v in predictions.items()}
        return {"image": batch["image"][:n], "mask": batch["mask"][:n], "predictions": local}
