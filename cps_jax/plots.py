"""Curves a person would rather see than read, drawn from a run's `metrics.jsonl`."""

import json
import os

import numpy as np


def read_log(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pseudo_share_curves(records: list[dict], class_names) -> dict | None:
    """{"steps": [S], "share": [S, C], "true_share": [S, C]} from the pseudo/ entries of a log, or
    None if the run logged no pseudo-label diagnostics."""
    rows = [r for r in records if f"pseudo/share/{class_names[0]}" in r]
    if not rows:
        return None
    last = {}  # a resumed run logs some steps twice: the later entry wins
    for r in rows:
        last[r["step"]] = r
    steps = sorted(last)
    grab = lambda key: np.array(
        [[last[s][f"pseudo/{key}/{name}"] for name in class_names] for s in steps]
    )
    return {"steps": np.array(steps), "share": grab("share"), "true_share": grab("true_share")}


def _colors(n: int):
    import matplotlib

    return [matplotlib.colormaps["tab20"](i % 20) for i in range(n)]


def pseudo_shares_figure(runs: dict, class_names, path: str) -> bool:
    """One panel per run ({title: workdir}): each class's share of the pseudo labels over training
    (solid) and of the hidden masks (dashed, same colour). Returns False if no run has the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {title: pseudo_share_curves(read_log(w), class_names) for title, w in runs.items()}
    curves = {t: c for t, c in curves.items() if c is not None}
    if not curves:
        return False
    fig, axes = plt.subplots(
        1, len(curves), figsize=(5.5 * len(curves), 4), dpi=110, sharey=True, squeeze=False
    )
    colors = _colors(len(class_names))
    for ax, (title, c) in zip(axes[0], curves.items()):
        for k, name in enumerate(class_names):
            ax.plot(c["steps"], 100 * c["share"][:, k], color=colors[k], label=name)
            ax.plot(c["steps"], 100 * c["true_share"][:, k], color=colors[k], ls="--", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of unlabeled pixels (%)")
    fig.suptitle("pseudo labels (solid) against the hidden masks (dashed)", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def pseudo_shares_from_log(workdir: str, class_names) -> str | None:
    """`<workdir>/images/pseudo_shares.png` for a run that logged pseudo-label diagnostics."""
    path = os.path.join(workdir, "images", "pseudo_shares.png")
    return path if pseudo_shares_figure({"pseudo-label class shares": workdir}, class_names, path) else None


def scalar_curves(records: list[dict], keys) -> dict:
    """{key: (steps, values)} of the logged scalars `keys` (a resumed run's later entry wins)."""
    curves = {}
    for key in keys:
        last = {r["step"]: r[key] for r in records if key in r}
        steps = sorted(last)
        if steps:
            curves[key] = (np.array(steps), np.array([last[s] for s in steps]))
    return curves


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and up to window - 1 values before it."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    lo = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[lo]) / (np.arange(1, len(values) + 1) - lo)


def scalar_curves_figure(workdir: str, keys, path: str, ylabel: str, window: int = 5) -> bool:
    """The logged scalars `keys` of a run over its steps, each as logged (thin) and as a moving
    average over `window` log steps (thick: one logged batch is noisy); False if none."""
    curves = scalar_curves(read_log(workdir), keys)
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=110)
    for k, (key, (steps, values)) in enumerate(curves.items()):
        color = f"C{k}"
        ax.plot(steps, values, color=color, lw=0.6, alpha=0.5)
        ax.plot(steps, moving_average(values, window), color=color, lw=2, label=key.split("/")[-1])
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
