"""Process-0 logging: TensorBoard events, a JSON-lines log, and a console progress line."""

import json
import os
import time

import jax
import numpy as np


class MetricLogger:
    """Writes scalars to TensorBoard (tensorboardX, no TensorFlow needed) and to `metrics.jsonl`."""

    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0}
        for key, value in clean.items():
            self._tb.add_scalar(key, value, step)
        self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._jsonl.flush()

    def image(self, tag: str, image_uint8: np.ndarray, step: int) -> None:
        """An RGB image [H, W, 3] uint8 in TensorBoard."""
        if self.enabled:
            self._tb.add_image(tag, np.asarray(image_uint8), step, dataformats="HWC")

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Progress:
    """Steps/s and ETA over the interval since the last report."""

    def __init__(self, start_step: int, total_steps: int):
        self.total = total_steps
        self._last_step, self._last_time = start_step, time.perf_counter()

    def rate(self, step: int) -> tuple[float, float]:
        now = time.perf_counter()
        steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
        return steps_per_s, eta

    def line(self, step: int, metrics: dict) -> str:
        steps_per_s, eta = self.rate(step)
        terms = " ".join(f"{k}={float(v):.4g}" for k, v in metrics.items())
        return (
            f"step {step}/{self.total} | {steps_per_s:.2f} steps/s | ETA {format_seconds(eta)} | "
            f"{terms}"
        )


def format_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def per_class_table(class_names, results: dict) -> str:
    """Markdown table: one row per class, one column per evaluated net, then mIoU and pixel accuracy."""
    nets = list(results)
    lines = ["| class | " + " | ".join(nets) + " |", "|---" * (len(nets) + 1) + "|"]
    for c, name in enumerate(class_names):
        cells = [
            f"{100 * results[n]['iou'][c]:.2f}" if np.isfinite(results[n]["iou"][c]) else "-"
            for n in nets
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mIoU** | " + " | ".join(f"**{100 * results[n]['miou']:.2f}**" for n in nets) + " |"
    )
    lines.append(
        "| pixel acc. | "
        + " | ".join(f"{100 * results[n]['pixel_accuracy']:.2f}" for n in nets)
        + " |"
    )
    return "\n".join(lines)
