"""Image-level labels: the class-aware cross-entropy, class-masked pseudo labels, the multi-label
loss, PCT's dynamic evaluation and image weights, tags files, three-way partitions, the streams
that carry them, and PCT through the trainer and a checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

import fake_archives as fa
from configs import demo
from cps_jax import datasets, input_pipeline, losses, pseudo_labels
from cps_jax.data import archives, image_folder, partitions
from cps_jax.methods import pct
from cps_jax.methods.cross_term import CrossTerm
from cps_jax.trainer import Trainer


def numpy_cce(logits, labels, classes):
    """Mean over valid pixels of -log(y_c e^f_c / Σ_k y_k e^f_k); a label outside [0, C) or of a
    class absent from the image is not counted."""
    total, count = 0.0, 0
    n, h, w, c = logits.shape
    for i in range(n):
        present = classes[i].astype(bool)
        for y in range(h):
            for x in range(w):
                label = labels[i, y, x]
                if not (0 <= label < c) or not present[label]:
                    continue
                f = logits[i, y, x].astype(np.float64)
                total += -(f[label] - np.log(np.exp(f[present]).sum()))
                count += 1
    return total / max(count, 1)


def test_class_aware_cross_entropy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3, 4)).astype(np.int32)
    labels[0, 0, :2] = 255  # ignored pixels
    classes = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], np.uint8)  # classes 2, 4 / 0 absent
    assert (~classes[np.arange(2)[:, None, None], labels.clip(0, 4)].astype(bool)).any()
    got = float(losses.class_aware_cross_entropy(logits, labels, classes))
    np.testing.assert_allclose(got, numpy_cce(logits, labels, classes), rtol=1e-5)
    # Every class present: the plain cross-entropy.
    ones = np.ones_like(classes)
    np.testing.assert_allclose(
        float(losses.class_aware_cross_entropy(logits, labels, ones)),
        float(losses.cross_entropy(logits, labels)),
        rtol=1e-6,
    )
    # Absent classes get no probability and no gradient; every gradient is finite.
    grad = jax.grad(lambda f: losses.class_aware_cross_entropy(f, labels, classes))(logits)
    assert np.isfinite(grad).all()
    assert (grad[0][..., [2, 4]] == 0).all() and (grad[1][..., 0] == 0).all()
    log_p = np.asarray(losses.class_aware_log_softmax(logits, classes))
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-6)
    assert np.isneginf(log_p[0][..., [2, 4]]).all()


def test_class_masked_argmax_by_hand():
    logits = np.zeros((2, 1, 2, 3), np.float32)
    logits[0, 0, 0] = [5.0, 1.0, 2.0]  # best overall: 0, absent in image 0 -> 2
    logits[0, 0, 1] = [0.0, 3.0, 1.0]  # best: 1, absent -> 2
    logits[1, 0, 0] = [5.0, 1.0, 2.0]  # image 1 holds 0 and 1 -> 0
    logits[1, 0, 1] = [1.0, 0.5, 9.0]  # 2 absent -> 0
    classes = np.array([[0, 0, 1], [1, 1, 0]], np.uint8)
    got = np.asarray(pseudo_labels.class_masked_argmax(logits, classes))
    np.testing.assert_array_equal(got, [[[2, 2]], [[0, 0]]])
    # A vector of zeros (nothing known) masks nothing.
    none = np.asarray(pseudo_labels.class_masked_argmax(logits, np.zeros_like(classes)))
    np.testing.assert_array_equal(none, np.argmax(logits, -1))


def test_class_masked_cps_targets_keep_to_the_image_classes():
    config = demo.get_config("runlocal")
    config.pseudo.class_mask = True
    cross = CrossTerm.from_config(config)
    rng = np.random.default_rng(1)
    logits = {net: rng.normal(size=(2, 4, 4, 5)).astype(np.float32) for net in ("left", "right")}
    classes = np.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0]], np.uint8)
    targets = cross.targets(logits, {}, classes)
    for net in logits:
        labels = np.asarray(targets[net].labels)
        assert set(np.unique(labels[0])) <= {0, 3} and set(np.unique(labels[1])) <= {1, 2}
    config.pseudo.class_mask = False  # off: the classes are not used
    plain = CrossTerm.from_config(config).targets(logits, {}, classes)
    np.testing.assert_array_equal(plain["left"].labels, np.argmax(logits["left"], -1))


def test_multilabel_soft_margin_against_numpy():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 4)).astype(np.float32) * 3
    targets = (rng.random((3, 4)) < 0.5).astype(np.float32)
    sigmoid = 1 / (1 + np.exp(-scores.astype(np.float64)))
    expected = np.mean(
        -np.mean(targets * np.log(sigmoid) + (1 - targets) * np.log(1 - sigmoid), axis=1)
    )
    np.testing.assert_allclose(float(losses.multilabel_soft_margin(scores, targets)), expected, rtol=1e-6)


def test_classification_loss_max_pools_and_skips_classes():
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 1, 0] = [4.0, -1.0, 2.0]
    logits[0, 0, 1, 1] = -0.5
    pooled = np.array([[4.0, 0.0, 2.0]], np.float32)  # per-class max over the image
    classes = np.array([[1, 0, 1]])
    keep = np.array([False, True, True])  # class 0 (a background) skipped
    got = float(pct.classification_loss(logits, classes, keep))
    want = float(losses.multilabel_soft_margin(pooled[:, keep], classes[:, keep]))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dynamic_evaluation_counts_over_two_steps_by_hand():
    counts = pct.initial_counts(3)
    truth1 = np.array([[[0, 0, 1], [2, 255, 1]]])
    pred1 = np.array([[[0, 1, 1], [2, 0, 0]]])  # the pixel at 255 does not count
    counts = pct.update_counts(counts, pred1, truth1, 0.5)
    # step 1: T = 0.5*1 + (2, 2, 1); P = (2, 2, 1) over the 5 labeled pixels; TP = (1, 1, 1)
    np.testing.assert_allclose(counts["truth"], [2.5, 2.5, 1.5])
    np.testing.assert_allclose(counts["predicted"], [2.0, 2.0, 1.0])
    np.testing.assert_allclose(counts["true_positive"], [1.0, 1.0, 1.0])
    truth2 = np.array([[[2, 2, 2], [0, 1, 1]]])
    pred2 = np.array([[[2, 2, 0], [0, 0, 1]]])
    counts = pct.update_counts(counts, pred2, truth2, 0.5)
    # step 2: T = 0.5*T + (1, 2, 3); P = 0.5*P + (3, 1, 2); TP = 0.5*TP + (1, 1, 2)
    np.testing.assert_allclose(counts["truth"], [2.25, 3.25, 3.75])
    np.testing.assert_allclose(counts["predicted"], [4.0, 2.0, 2.5])
    np.testing.assert_allclose(counts["true_positive"], [1.5, 1.5, 2.5])
    iou = np.asarray(pct.counts_iou(counts))
    np.testing.assert_allclose(iou, [1.5 / 4.75, 1.5 / 3.75, 2.5 / 3.75], rtol=1e-6)
    # At the start (T = 1, P = TP = 0) every IoU is 0.
    np.testing.assert_array_equal(pct.counts_iou(pct.initial_counts(3)), 0.0)


def test_image_weights_by_hand():
    iou = np.array([0.9, 0.5, 0.8, 0.1])
    classes = np.array([[1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    got = np.asarray(pct.image_weights(iou, classes, 8.0))
    np.testing.assert_allclose(got, [0.8**8, 0.5**8, 0.1**8, 1.0], rtol=1e-6)


def test_tags_file_parsing_and_its_errors(tmp_path):
    names = ("road", "car", "sky")
    path = tmp_path / "tags.json"
    path.write_text(json.dumps({"a/x": ["car", "road"], "b": []}))
    tags = image_folder.read_tags_file(str(path), names, ["a/x", "b", "c"])
    np.testing.assert_array_equal(tags["a/x"], [1, 1, 0])
    np.testing.assert_array_equal(tags["b"], [0, 0, 0])
    assert set(tags) == {"a/x", "b"}
    path.write_text(json.dumps({"a/x": ["car", "tree"]}))
    with pytest.raises(archives.DataError, match=f"{path}: 'a/x': unknown class 'tree'"):
        image_folder.read_tags_file(str(path), names, ["a/x"])
    path.write_text(json.dumps({"a/y": ["car"]}))
    with pytest.raises(archives.DataError, match=f"{path}: 'a/y': no image .*did you mean 'a/x'"):
        image_folder.read_tags_file(str(path), names, ["a/x"])
    path.write_text(json.dumps(["car"]))
    with pytest.raises(archives.DataError, match=f"{path}: expected"):
        image_folder.read_tags_file(str(path), names, ["a/x"])
    path.write_text("{")
    with pytest.raises(archives.DataError, match=f"{path}: not valid JSON"):
        image_folder.read_tags_file(str(path), names, ["a/x"])


def test_three_way_partition_is_disjoint_nested_and_deterministic():
    n = 100
    labeled, _ = partitions.split_labeled(n, "1/16", 3)
    sets = {f: partitions.image_labeled(n, labeled, f, 3) for f in ("1/4", "1/2", "rest", "")}
    for image, unlabeled in sets.values():
        assert not set(image) & set(labeled) and not set(image) & set(unlabeled)
        assert sorted(set(labeled) | set(image) | set(unlabeled)) == list(range(n))
    assert len(sets["1/4"][0]) == 25 and len(sets["1/2"][0]) == 50
    assert set(sets["1/4"][0]) <= set(sets["1/2"][0])  # nested
    assert len(sets["rest"][0]) == n - len(labeled) and len(sets[""][0]) == 0
    again = partitions.image_labeled(n, labeled, "1/4", 3)
    np.testing.assert_array_equal(again[0], sets["1/4"][0])
    with pytest.raises(ValueError, match="config.data.image_labeled_fraction"):
        partitions.image_labeled(n, labeled, "half", 3)


def _config(tmp_path, method="pct", image_labeled="rest"):
    config = demo.get_config("runlocal")
    config.method = method
    config.data.data_dir = str(tmp_path / "data")
    config.data.image_labeled_fraction = image_labeled
    config.data.worker_threads = 0
    return config


def test_streams_carry_image_labels_only_where_known(tmp_path):
    config = _config(tmp_path, "pct", "1/4")
    data = datasets.load(config.data)
    ids = data.train_ids()
    labeled, _ = partitions.split_labeled(len(ids), config.data.labeled_fraction, 0)
    image, _ = partitions.image_labeled(len(ids), labeled, "1/4", 0)
    c = data.num_classes
    # The w stream: pixel-labeled and image-labeled images, classes from their masks.
    rows = input_pipeline.Rows([(data.train, labeled, True, True), (data.train, image, True, False)])
    assert len(rows) == len(labeled) + len(image)
    batch = next(iter(input_pipeline.train_dataset(config, data)))
    assert set(batch) == {f"{f}_{s}" for f in input_pipeline.FIELDS for s in ("l", "w")}
    for s in ("l", "w"):
        for mask, classes in zip(batch[f"mask_{s}"], batch[f"classes_{s}"]):
            # the crop's classes are among the whole image's
            assert set(np.unique(mask[mask < c])) <= set(np.flatnonzero(classes))
    assert batch["pixel_l"].all()
    # The u stream of CPS: image-labeled images get classes, the unlabeled ones all classes.
    config.method = "cps"
    config.batch_size_unlabeled = 16
    batch = next(iter(input_pipeline.train_dataset(config, data)))
    assert not batch["pixel_u"].any()
    known = [cl for cl in batch["classes_u"] if not cl.all()]
    unknown = [cl for cl in batch["classes_u"] if cl.all()]
    assert known and unknown
    # synthetic_streets stores its classes: the ones from the mask agree with them
    ex = data.train[int(image[0])]
    np.testing.assert_array_equal(
        input_pipeline.classes_from_mask(np.asarray(ex["mask"])[..., 0], c), ex["classes"]
    )


def test_methods_of_image_labels_need_some(tmp_path):
    config = _config(tmp_path, "pct", "")
    data = datasets.load(config.data)
    with pytest.raises(ValueError, match="config.data.image_labeled_fraction"):
        input_pipeline.train_dataset(config, data)


def test_image_folder_tags_make_unlabeled_images_image_labeled(tmp_path):
    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=4, val=True)
    names = [c["name"] for c in json.load(open(folder / image_folder.CLASS_FILE))["classes"]]
    (folder / image_folder.TAGS_FILE).write_text(json.dumps({"u_0": [names[1]]}))
    config = _config(tmp_path, "pct", "")
    config.data.name, config.data.folder = "image_folder", str(folder)
    config.data.crop_size = (8, 8)
    config.data.labeled_fraction = "1"
    config.batch_size_unlabeled = 4
    data = datasets.load(config.data)
    np.testing.assert_array_equal(data.tags["u_0"], np.eye(len(names), dtype=np.uint8)[1])
    batch = next(iter(input_pipeline.train_dataset(config, data)))
    tagged = [cl for cl, px in zip(batch["classes_w"], batch["pixel_w"]) if not px]
    assert tagged and all((cl == data.tags["u_0"]).all() for cl in tagged)
    (folder / image_folder.TAGS_FILE).write_text(json.dumps({"u_0": ["nope"]}))
    config.data.data_dir = str(tmp_path / "data2")
    with pytest.raises(archives.DataError, match="tags.json: 'u_0': unknown class 'nope'"):
        datasets.load(config.data)


@pytest.mark.slow
def test_pct_trains_keeps_its_counts_and_labels_a_stage_two_folder(tmp_path):
    from cps_jax.commands.pseudo_label import pseudo_label

    config = _config(tmp_path, "pct", "1/4")
    config.total_steps = config.eval_every = config.checkpoint_every = 2
    data = datasets.load(config.data)
    workdir = str(tmp_path / "run")
    trainer = Trainer(config, workdir, data=data)
    results = trainer.train()
    assert {"left", "right"} <= set(results)
    restored = trainer.checkpointer.restore(2, trainer.abstract_state())
    counts = jax.tree.map(np.asarray, restored.extra["counts"])
    assert counts["predicted"].sum() > 0  # two steps of counts, not the initial ones
    live = jax.tree.map(np.asarray, trainer.state.extra["counts"])
    for k in counts:
        np.testing.assert_array_equal(counts[k], live[k])

    out = str(tmp_path / "labels")
    summary = pseudo_label(workdir, out, scales=(0.75, 1.0), flip=True)
    labeled, _, image = input_pipeline.partition_sets(config, data)
    assert summary["pixel_labeled"] == len(labeled) and summary["pseudo_labeled"] == len(image)
    assert 0 <= summary["miou"] <= 1
    read = lambda path: fa.decode(open(path, "rb").read())  # noqa: E731
    for i in list(labeled[:3]) + list(image[:3]):
        ex = data.train[int(i)]
        ident = ex["id"].decode()
        np.testing.assert_array_equal(read(os.path.join(out, "images", ident + ".png")), ex["image"])
        mask = read(os.path.join(out, "masks", ident + ".png"))
        truth = np.asarray(ex["mask"])[..., 0]
        if i in labeled:
            np.testing.assert_array_equal(mask, truth)  # ground truth kept as it is
        else:  # pseudo labels among the image's classes only
            assert set(np.unique(mask)) <= set(np.unique(truth[truth < data.num_classes]))
    assert len(os.listdir(os.path.join(out, "val", "masks"))) == len(data.validation)
    # The folder is an image_folder: stage 2 reads it with the same classes and validation set.
    stage2 = demo.get_config("runlocal")
    stage2.method, stage2.data.name, stage2.data.folder = "supervised", "image_folder", out
    stage2.data.data_dir = str(tmp_path / "data2")
    folder = datasets.load(stage2.data)
    assert tuple(folder.class_names) == tuple(data.class_names)
    assert len(folder.train) == len(labeled) + len(image)
    assert len(folder.validation) == len(data.validation)
