"""Rounds of self-training across domains with class-balanced pseudo labels (CBST, Zou et al.
2018), resumable at every stage.

  round 0   the teacher: `config.adapt.teacher` (source_only by default; or an adaptation method,
            e.g. dacs, which also reads the unlabeled target) on the labeled source
            (config.data.source), scored on the target's validation split;
  round r   the previous round's net pseudo-labels the target's train split. Per class c, k_c is
            the confidence at the top-p quantile of the pixels predicted c (over the whole split),
            and a pixel keeps its label where p_c / k_c >= 1, else it is ignored; p starts at
            `adapt.cbst_start` (0.2) and grows by `adapt.cbst_step` (0.05) a round up to
            `adapt.cbst_max` (0.5). With `adapt.cbst_quota="source"` a class keeps at most p times
            its share of the source's labels of all pixels: a class the teacher over-predicts on
            the target keeps only its most confident pixels (CBST's quota counts the teacher's
            own predictions, so its errors keep their share). The student trains on the source
            with its labels plus the pseudo-labeled target (one image_folder), and becomes the
            next teacher. It starts from model.pretrained (`adapt.student_init` "pretrained"), or as its teacher whole
            ("teacher", as CBST fine-tunes the previous round's net; the teacher is written to
            round_r/teacher.cpsj).

WORKDIR/round_0/ (a run), WORKDIR/round_r/{pseudo_labels/ (the folder, its pseudo_labels.json:
p, kept share, each class's share of the kept labels and pseudo-label accuracy against the target's
hidden masks where it has them, with each class's true share),
run/}, WORKDIR/source/ and WORKDIR/target_val/ (written once, linked into each round's folder),
WORKDIR/rounds.json (every round's figures). Stopped anywhere, the same command continues: a
finished stage is read back, a run resumes from its checkpoint.
"""

import json
import os

import numpy as np

from cps_jax import export, inference, metrics, pseudo_folder
from cps_jax.data.labels import IGNORE_LABEL

BINS = 10_000  # confidence histogram bins of the thresholds (a resolution of 1e-4)
SUMMARY_FILE = "rounds.json"


def portion(round_index: int, adapt_config) -> float:
    """p of round r >= 1: cbst_start + (r - 1) cbst_step, at most cbst_max."""
    p = adapt_config.cbst_start + (round_index - 1) * adapt_config.cbst_step
    return float(min(p, adapt_config.cbst_max))


# How many pixels each class may keep (config.adapt.cbst_quota, checked by config_checks):
# "predicted", CBST's p of the pixels predicted as the class; "source", at most p times the class's
# share of the source's labels of all pixels.
QUOTAS = ("predicted", "source")


def quotas(predicted, p: float, prior=None) -> np.ndarray:
    """Pixels kept per class: ceil(p n_c) of the n_c predicted c, at least 1 where n_c > 0; with
    `prior` (class shares, summing to 1), ceil(p min(n_c, prior_c N)) of the N pixels, 0 for a
    class the prior has not."""
    n = np.asarray(predicted, np.float64)
    budget = n if prior is None else np.minimum(n, np.asarray(prior, np.float64) * n.sum())
    q = np.ceil(p * budget - 1e-9)
    allowed = n > 0 if prior is None else (n > 0) & (np.asarray(prior) > 0)
    return np.where(allowed, np.maximum(q, 1), 0).astype(np.int64)


def exact_thresholds(labels, confidence, num_classes: int, p: float, prior=None) -> np.ndarray:
    """k_c: the confidence of the q_c-th most confident of the pixels predicted c (`quotas`);
    1 for a class nobody predicts, infinite for one whose quota is 0."""
    labels, confidence = np.asarray(labels).ravel(), np.asarray(confidence).ravel()
    q = quotas(np.bincount(labels, minlength=num_classes), p, prior)
    k = np.ones(num_classes)
    for c in range(num_classes):
        conf = np.sort(confidence[labels == c])[::-1]
        if conf.size:
            k[c] = conf[q[c] - 1] if q[c] else np.inf
    return k


def histogram(labels, confidence, num_classes: int) -> np.ndarray:
    """[C, BINS] counts of the pixels predicted c by confidence bin."""
    bins = np.clip((np.asarray(confidence).ravel() * BINS).astype(np.int64), 0, BINS - 1)
    index = np.asarray(labels).ravel().astype(np.int64) * BINS + bins
    return np.bincount(index, minlength=num_classes * BINS).reshape(num_classes, BINS)


def thresholds(hist: np.ndarray, p: float, prior=None) -> np.ndarray:
    """exact_thresholds from histograms, to within a bin: the lower edge of the bin that holds
    the q_c-th most confident pixel."""
    q = quotas(hist.sum(axis=1), p, prior)
    k = np.ones(hist.shape[0])
    for c, counts in enumerate(hist):
        if counts.sum() == 0:
            continue
        if q[c] == 0:
            k[c] = np.inf
            continue
        from_top = np.cumsum(counts[::-1])
        first = int(np.argmax(from_top >= q[c]))
        k[c] = (BINS - 1 - first) / BINS
    return k


def label_shares(split, num_classes: int) -> np.ndarray:
    """Each class's share of the labeled pixels of `split` (its masks; ignore left out)."""
    counts = np.zeros(num_classes, np.int64)
    for i in range(len(split)):
        _, mask = pseudo_folder.image_and_mask(split[i])
        counts += np.bincount(mask[mask < num_classes].ravel(), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def keep(labels, confidence, k) -> np.ndarray:
    """Where the pseudo label survives: p_c / k_c >= 1."""
    return np.asarray(confidence) >= np.asarray(k)[np.asarray(labels)]


def _link_tree(src: str, dst: str) -> None:
    """Every file under src, linked at the same relative path under dst."""
    for root, _, files in os.walk(src):
        for f in files:
            target = os.path.join(dst, os.path.relpath(os.path.join(root, f), src))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.path.abspath(os.path.join(root, f)), target)


def write_round_folder(config, net, data, out_dir: str, workdir: str, p: float, prior=None) -> dict:
    """The student's folder: the source's images and labels, the target's train images with their
    CBST pseudo labels (each class's quota from `prior`, the source's label shares, if given), and
    the target's validation split; returns the labels' summary."""
    num_classes = data.num_classes
    options = inference.options_from_config(config)
    predict = pseudo_folder.predictor(config, net, num_classes, options)
    for name, source in (("source", data.source.train), ("target_val", data.validation)):
        done = os.path.join(workdir, name, ".complete")
        if not os.path.exists(done):
            pseudo_folder.write_split(source, os.path.join(workdir, name))
            open(done, "w").close()
    # Pass 1: the per-class thresholds over the whole target train split.
    hist = np.zeros((num_classes, BINS), np.int64)
    for i in range(len(data.train)):
        image, _ = pseudo_folder.image_and_mask(data.train[i])
        hist += histogram(*predict(image), num_classes)
    k = thresholds(hist, p, prior)
    # Pass 2: the labels kept, scored against the hidden masks where there are any.
    confusion = np.zeros((num_classes, num_classes), np.int64)
    true_counts = np.zeros(num_classes, np.int64)  # of the hidden masks, kept or not
    label_counts = np.zeros(num_classes, np.int64)  # of the labels written
    kept = total = 0
    for i in range(len(data.train)):
        example = data.train[i]
        image, truth = pseudo_folder.image_and_mask(example)
        labels, confidence = predict(image)
        kept_here = keep(labels, confidence, k)
        out = np.where(kept_here, labels, IGNORE_LABEL).astype(np.uint8)
        ident = pseudo_folder.ident_of(example)
        pseudo_folder.write_png(os.path.join(out_dir, "images", "target", ident + ".png"), image)
        pseudo_folder.write_png(os.path.join(out_dir, "masks", "target", ident + ".png"), out)
        confusion += np.asarray(metrics.confusion_matrix(truth, out, num_classes))
        true_counts += np.bincount(truth[truth < num_classes].ravel(), minlength=num_classes)
        label_counts += np.bincount(out[out < num_classes].ravel(), minlength=num_classes)
        kept, total = kept + int(kept_here.sum()), total + kept_here.size
    pseudo_folder.write_class_file(out_dir, data)
    for sub in ("images", "masks"):
        _link_tree(os.path.join(workdir, "source", sub), os.path.join(out_dir, sub, "source"))
        _link_tree(os.path.join(workdir, "target_val", sub), os.path.join(out_dir, "val", sub))
    # A class with no quota keeps nothing: its threshold is written as null.
    finite = [float(v) if np.isfinite(v) else None for v in k]
    summary = {"portion": p, "thresholds": finite, "kept": kept / max(total, 1)}
    if prior is not None:
        summary["quota_shares"] = [float(v) for v in prior]
    summary["share"] = [float(v) for v in label_counts / max(label_counts.sum(), 1)]
    if confusion.sum():
        # The collapse detector: each class's share of the labels written beside its share of the
        # hidden masks (a share far above the true one is a class the teacher over-predicts).
        summary["true_share"] = [float(v) for v in true_counts / max(true_counts.sum(), 1)]
        scores = metrics.segmentation_metrics(confusion)
        summary.update(
            accuracy=float(scores["pixel_accuracy"]),
            miou=float(scores["miou"]),
            iou=[float(v) for v in scores["iou"]],
        )
    with open(os.path.join(out_dir, pseudo_folder.SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


# The values of config.adapt.teacher and config.adapt.student_init (config_checks checks them).
TEACHERS = ("source_only", "minent", "adaptseg", "advent", "dacs")
STUDENT_INITS = ("pretrained", "teacher")


def teacher_config(config):
    """Round 0: `config.adapt.teacher` on the labeled source (and the unlabeled target)."""
    config = config.copy_and_resolve_references()
    config.method = config.adapt.teacher
    return config


def student_config(config, folder: str, teacher_file: str = ""):
    """Supervised on the round's folder (source + pseudo-labeled target), validated on the
    target's validation split (the folder's val/); with `teacher_file` (adapt.student_init
    "teacher") it starts as that exported net, heads included."""
    config = config.copy_and_resolve_references()
    if teacher_file:
        config.model.pretrained, config.model.pretrained_heads = teacher_file, True
    config.method = "supervised"
    config.data.name, config.data.folder = "image_folder", folder
    config.data.classes, config.data.source.name = (), ""
    config.data.labeled_fraction, config.data.image_labeled_fraction = "1", ""
    config.data.labeled_list = ""
    return config


def _finished(workdir: str, total_steps: int):
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    return results if results.get("step") == total_steps else None


def run_rounds(config, workdir: str, rounds: int, *, train_run, data, restore) -> list:
    """Every round (module docstring); `train_run(config, workdir) -> results` and
    `restore(workdir, num_classes) -> net` (a finished run's first net) are the trainer's,
    injected so that this module stays free of the training loop. Returns each round's figures."""
    if data.source is None:
        raise ValueError("self-training needs a labeled source: set config.data.source.name")
    summary = []
    teacher = teacher_config(config)
    run_dir = os.path.join(workdir, "round_0")
    results = _finished(run_dir, config.total_steps) or train_run(teacher, run_dir)
    summary.append({"round": 0, "miou": _miou(results)})
    teacher_dir = run_dir
    prior = None  # the source's label shares (adapt.cbst_quota "source"), read once when needed
    for r in range(1, rounds + 1):
        folder = os.path.join(workdir, f"round_{r}", "pseudo_labels")
        labels_file = os.path.join(folder, pseudo_folder.SUMMARY_FILE)
        if os.path.exists(labels_file):
            with open(labels_file) as f:
                labels = json.load(f)
        else:
            if prior is None and config.adapt.cbst_quota == "source":
                prior = label_shares(data.source.train, data.num_classes)
            net = restore(teacher_dir, data.num_classes)
            labels = write_round_folder(config, net, data, folder, workdir, portion(r, config.adapt), prior)
        teacher_file = ""
        if config.adapt.student_init == "teacher":
            teacher_file = os.path.join(workdir, f"round_{r}", "teacher.cpsj")
            if not os.path.exists(teacher_file):
                save_teacher(config, restore(teacher_dir, data.num_classes), data, teacher_file)
        student = student_config(config, folder, teacher_file)
        run_dir = os.path.join(workdir, f"round_{r}", "run")
        results = _finished(run_dir, config.total_steps) or train_run(student, run_dir)
        summary.append({"round": r, "miou": _miou(results), "pseudo_labels": labels})
        teacher_dir = run_dir
        with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=1)
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def save_teacher(config, net: dict, data, path: str) -> None:
    """The teacher's net as a cps-export file, for its student to start from."""
    model = export.Model(
        config=config, nets={"left": net}, class_names=tuple(data.class_names), palette=data.palette
    )
    export.save(model, path)


def _miou(results) -> float:
    left = results["left"]
    return float(left["miou"])
