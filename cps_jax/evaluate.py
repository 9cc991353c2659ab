"""The evaluator shared by training and the standalone `cps-eval`: every net of the state (left,
right) and, when there are two, their averaged-softmax ensemble, each scored by a confusion matrix
summed over the whole split. How each net predicts (whole image or sliding window, scales, flip)
is `cps_jax.inference`, set by `config.eval`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cps_jax import checkpointing, distributed, inference, input_pipeline, metrics, parallel
from cps_jax.data.transforms import IGNORE_LABEL
from cps_jax.models.functional import apply_net


def net_logits(graphdef, nets: dict, images, sizes, options: inference.InferenceOptions) -> dict:
    """{net name: logits [N,H,W,C]} of a batch canvas, each net predicting by `options`."""

    def logits_of(net):
        def apply_fn(x):
            return apply_net(graphdef, net["params"], net["batch_stats"], x, train=False)[0]

        return inference.predict_logits(apply_fn, images, sizes, options)

    return {name: logits_of(net) for name, net in nets.items()}


def predictions(logits: dict) -> dict:
    """{name: class map}, plus `ensemble` (argmax of the mean softmax) when there are two nets."""
    out = {name: jnp.argmax(l, -1) for name, l in logits.items()}
    if len(logits) > 1:
        probs = sum(jax.nn.softmax(l) for l in logits.values()) / len(logits)
        out["ensemble"] = jnp.argmax(probs, -1)
    return out


def _eval_step(graphdef, num_classes: int, options, nets: dict, batch: dict):
    preds = predictions(net_logits(graphdef, nets, batch["image"], batch["size"], options))
    weight = batch["weight"][:, None, None]
    confusion = {
        name: metrics.confusion_matrix(batch["mask"], p, num_classes, weight)
        for name, p in preds.items()
    }
    return confusion, preds


def _common_canvas(batch: dict) -> dict:
    """Pads this process's batch to the largest canvas over all processes (one global shape)."""
    if jax.process_count() == 1:
        return batch
    from jax.experimental import multihost_utils

    hw = np.asarray(batch["image"].shape[1:3])
    target = multihost_utils.process_allgather(hw).reshape(-1, 2).max(0)
    pads = ((0, 0), (0, int(target[0] - hw[0])), (0, int(target[1] - hw[1])))
    return {
        **batch,
        "image": np.pad(batch["image"], pads + ((0, 0),)),
        "mask": np.pad(batch["mask"], pads, constant_values=IGNORE_LABEL),
    }


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
        options: inference.InferenceOptions = inference.InferenceOptions(),
    ):
        self.data, self.split, self.mesh, self.options = data, split, mesh, options
        self.batch_size, self.worker_threads, self.num_visualize = (
            batch_size,
            worker_threads,
            num_visualize,
        )
        parallel.check_divisible(batch_size, mesh, "eval_batch_size")
        self._step = distributed.CompiledTogether(
            jax.jit(
                functools.partial(_eval_step, graphdef, data.num_classes, options),
                in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                out_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
            ),
            "eval step",
        )

    @classmethod
    def from_config(cls, config, graphdef, data, mesh, *, split: str, num_visualize: int = 0):
        return cls(
            graphdef,
            data,
            split=split,
            batch_size=config.eval_batch_size,
            mesh=mesh,
            worker_threads=config.data.worker_threads,
            num_visualize=num_visualize,
            options=inference.options_from_config(config),
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
            options=self.options,
        )
        total, shown = None, None
        for batch in batches:
            batch = _common_canvas(batch)
            host_index = batch.pop("index")
            confusion, preds = self._step(nets, parallel.global_batch(batch, self.mesh))
            total = confusion if total is None else jax.tree.map(jnp.add, total, confusion)
            if shown is None and self.num_visualize:
                shown = self._visual_sample(batch, preds, host_index)
        total = jax.device_get(total)
        order = sorted(total, key=lambda name: name == "ensemble")  # nets first, then the ensemble
        return {name: metrics.segmentation_metrics(total[name]) for name in order}, shown

    def _visual_sample(self, batch, preds, host_index):
        """The first few real examples of this process's first batch."""
        n = min(self.num_visualize, int((host_index >= 0).sum()))
        local = {k: parallel.process_local_rows(v)[:n] for k, v in preds.items()}
        return {"image": batch["image"][:n], "mask": batch["mask"][:n], "predictions": local}


def best_checkpoint(checkpointer) -> dict | None:
    """{step, miou} of the checkpoint kept as the best (the left net's mIoU), or None."""
    step = checkpointer.best_step()
    saved = checkpointer.metrics(step) if step is not None else None
    if not saved:
        return None
    return {"step": int(step), "miou": float(saved[checkpointing.BEST_METRIC])}


def best_and_last_line(best: dict | None, last_step: int, last_results: dict) -> str:
    """The two figures CPS papers report: the last checkpoint's and the best one's left-net mIoU."""
    line = f"left mIoU: last (step {last_step}) {100 * last_results['left']['miou']:.2f}"
    if best:
        line += f", best (step {best['step']}) {100 * best['miou']:.2f}"
    return line
