"""Self-training rounds: CBST thresholds on a hand-made case, and a command that resumes
mid-round."""

import json
import os

import numpy as np
import pytest

import jax

from configs import demo
from cps_jax import config_checks, export, self_training


def test_cbst_thresholds_by_hand():
    # class 0: confidences 0.9 0.8 0.7 0.6 0.5; class 1: 0.95 0.4; class 2: none predicted
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    conf = np.array([0.9, 0.6, 0.8, 0.5, 0.7, 0.4, 0.95])
    k = self_training.exact_thresholds(labels, conf, 3, 0.4)
    # top 40%: ceil(0.4 * 5) = 2 -> the 2nd most confident of class 0 (0.8); ceil(0.8) = 1 -> 0.95
    np.testing.assert_allclose(k, [0.8, 0.95, 1.0])
    kept = self_training.keep(labels, conf, k)
    np.testing.assert_array_equal(kept, [True, False, True, False, False, False, True])
    hist = self_training.histogram(labels, conf, 3)
    assert hist.sum() == 7 and hist[2].sum() == 0
    np.testing.assert_allclose(self_training.thresholds(hist, 0.4), k, atol=1.0 / self_training.BINS)
    # p = 1 keeps every pixel
    everything = self_training.exact_thresholds(labels, conf, 3, 1.0)
    assert self_training.keep(labels, conf, everything).all()


def test_source_quotas_cap_an_over_predicted_class_by_hand():
    # 10 pixels: class 0 predicted 6 times (confidences 0.99 ... 0.94), class 1 3 times (0.9 0.8
    # 0.7), class 2 once (0.6). The source's labels: 20 % class 0, 50 % class 1, 30 % class 2.
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    conf = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.9, 0.8, 0.7, 0.6])
    prior = np.array([0.2, 0.5, 0.3])
    # p = 0.5. CBST: ceil(0.5 * [6, 3, 1]) = [3, 2, 1] pixels. With the source's shares the budget
    # is min(n_c, share_c * 10) = [2, 3, 1] -> ceil(0.5 * [2, 3, 1]) = [1, 2, 1].
    np.testing.assert_array_equal(self_training.quotas([6, 3, 1], 0.5), [3, 2, 1])
    np.testing.assert_array_equal(self_training.quotas([6, 3, 1], 0.5, prior), [1, 2, 1])
    k = self_training.exact_thresholds(labels, conf, 3, 0.5, prior)
    np.testing.assert_allclose(k, [0.99, 0.8, 0.6])
    kept = self_training.keep(labels, conf, k)
    np.testing.assert_array_equal(np.flatnonzero(kept), [0, 6, 7, 9])
    hist = self_training.histogram(labels, conf, 3)
    np.testing.assert_allclose(self_training.thresholds(hist, 0.5, prior), k, atol=1.0 / self_training.BINS)
    # A class the source has no label of keeps nothing, whatever its confidence.
    none = self_training.exact_thresholds(labels, conf, 3, 0.5, np.array([0.5, 0.5, 0.0]))
    assert none[2] == np.inf and self_training.thresholds(hist, 0.5, np.array([0.5, 0.5, 0.0]))[2] == np.inf
    assert not self_training.keep(labels, conf, none)[9]


def test_rounds_with_p_zero_keep_only_each_class_top_pixels():
    """configs/adapt.py:cbst_start=0.0,cbst_step=0.0, the control of what pseudo labels add: every
    round keeps only each class's most confident pixel (with histograms, its top bin), whichever
    quota."""
    from configs import adapt as adapt_config

    config = adapt_config.get_config("method=source_only,cbst_start=0.0,cbst_step=0.0")
    assert [self_training.portion(r, config.adapt) for r in (1, 2, 3)] == [0.0, 0.0, 0.0]
    labels = np.array([0, 0, 0, 1, 1, 2])
    conf = np.array([0.7, 0.9, 0.8, 0.6, 0.65, 0.5])
    for prior in (None, np.array([0.4, 0.4, 0.2])):
        k = self_training.exact_thresholds(labels, conf, 3, 0.0, prior)
        np.testing.assert_array_equal(np.flatnonzero(self_training.keep(labels, conf, k)), [1, 4, 5])
    # The rounds threshold from histograms: pixels tied with the most confident one in its bin
    # (width 1 / BINS) keep their label too, so the control keeps a class's top bin.
    tied = np.array([0.7, 0.9, 0.90002, 0.6, 0.65, 0.5])
    hist = self_training.histogram(labels, tied, 3)
    for prior in (None, np.array([0.4, 0.4, 0.2])):
        k = self_training.thresholds(hist, 0.0, prior)
        np.testing.assert_array_equal(np.flatnonzero(self_training.keep(labels, tied, k)), [1, 2, 4, 5])


def test_label_shares_count_the_masks_pixels_without_ignore():
    masks = [np.array([[0, 0], [1, 255]], np.uint8), np.array([[2, 2], [2, 0]], np.uint8)]
    split = [{"image": np.zeros((2, 2, 3), np.uint8), "mask": m[..., None]} for m in masks]
    np.testing.assert_allclose(self_training.label_shares(split, 4), [3 / 7, 1 / 7, 3 / 7, 0])


def test_thresholds_from_histograms_agree_with_the_exact_ones():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 5000)
    conf = rng.random(5000)
    hist = self_training.histogram(labels, conf, 4)
    for p in (0.2, 0.35, 0.5):
        exact = self_training.exact_thresholds(labels, conf, 4, p)
        np.testing.assert_allclose(self_training.thresholds(hist, p), exact, atol=1.0 / self_training.BINS)


def test_the_portion_grows_a_step_a_round_up_to_its_maximum():
    adapt = demo.get_config().adapt
    assert [self_training.portion(r, adapt) for r in (1, 2, 3)] == pytest.approx([0.2, 0.25, 0.3])
    assert self_training.portion(50, adapt) == pytest.approx(0.5)


@pytest.mark.slow
def test_self_training_resumes_mid_round(tmp_path):
    from cps_jax.commands import self_train as command
    from cps_jax.trainer import Trainer

    config = demo.get_config("runlocal")
    config.data.data_dir = config.data.source.data_dir = str(tmp_path / "data")
    source = config.data.source
    source.name = "synthetic_streets"
    for field in ("height", "width", "num_train", "num_validation"):
        source[field] = config.data[field]
    config.total_steps = config.eval_every = config.checkpoint_every = 2
    workdir = str(tmp_path / "st")

    class Preempted(Exception):
        pass

    original = Trainer.train
    calls = []

    def stop_the_student(self, until=None):
        calls.append(self.workdir)
        if self.workdir.endswith(os.path.join("round_1", "run")) and len(calls) == 2:
            original(self, until=1)  # one step, checkpointed at step 1 ... then preempted
            raise Preempted
        return original(self, until)

    config.checkpoint_every = 1
    Trainer.train = stop_the_student
    try:
        with pytest.raises(Preempted):
            command.self_train(config, workdir, rounds=1)
        folder = os.path.join(workdir, "round_1", "pseudo_labels")
        labels_file = os.path.join(folder, "pseudo_labels.json")
        written = os.path.getmtime(labels_file)
        teacher = os.path.getmtime(os.path.join(workdir, "round_0", "results.json"))
        summary = command.self_train(config, workdir, rounds=1)
    finally:
        Trainer.train = original
    # The teacher and the folder were not made again; the student went on from its checkpoint.
    assert os.path.getmtime(labels_file) == written
    assert os.path.getmtime(os.path.join(workdir, "round_0", "results.json")) == teacher
    assert calls[-1].endswith(os.path.join("round_1", "run")) and len(calls) == 3
    logged = [json.loads(line) for line in open(os.path.join(workdir, "round_1", "run", "metrics.jsonl"))]
    assert [e["step"] for e in logged if "train/loss" in e] == [1, 2]  # step 1 was not trained again
    assert [e["round"] for e in summary] == [0, 1]
    labels = summary[1]["pseudo_labels"]
    assert labels["portion"] == pytest.approx(0.2) and 0 < labels["kept"] <= 1
    assert 0 <= labels["miou"] <= 1
    # The round's folder: the source images and the target's with pseudo labels, its validation.
    n_target = len(os.listdir(os.path.join(folder, "masks", "target")))
    n_source = len(os.listdir(os.path.join(folder, "masks", "source")))
    assert n_target == config.data.num_train and n_source == source.num_train
    assert len(os.listdir(os.path.join(folder, "val", "masks"))) == config.data.num_validation


def test_the_first_teacher_is_config_adapt_teacher():
    from cps_jax.errors import ConfigError

    config = demo.get_config("runlocal")
    assert self_training.teacher_config(config).method == "source_only"
    config.adapt.teacher = "dacs"
    assert self_training.teacher_config(config).method == "dacs"
    assert config.method == "cps"  # the caller's config is left as it was
    config.adapt.teacher = "cps"
    with pytest.raises(ConfigError, match="config.adapt.teacher: expected one of 'source_only'"):
        config_checks.check_self_training(config)
    config.adapt.teacher, config.adapt.student_init = "dacs", "scratch"
    with pytest.raises(ConfigError, match="config.adapt.student_init: expected one of 'pretrained'"):
        config_checks.check_self_training(config)
    config.adapt.student_init, config.adapt.cbst_quota = "teacher", "prior"
    with pytest.raises(ConfigError, match="config.adapt.cbst_quota: expected one of 'predicted', 'source'"):
        config_checks.check_self_training(config)
    student = self_training.student_config(config, "FOLDER", "T.cpsj")
    assert (student.model.pretrained, student.model.pretrained_heads) == ("T.cpsj", True)
    assert student.method == "supervised" and student.data.folder == "FOLDER"


@pytest.mark.slow
def test_a_dacs_teacher_starts_the_rounds(tmp_path):
    """configs/adapt.py:teacher=dacs: round 0 trains DACS (its EMA teacher in the state), and its
    first net labels round 1's target."""
    from cps_jax.commands import self_train as command
    from configs import adapt

    config = adapt.get_config("method=source_only,teacher=dacs")
    tiny = demo.get_config("runlocal")
    for data in (config.data, config.data.source):
        data.data_dir = str(tmp_path / "data")
        for field in ("height", "width", "num_train", "num_validation", "crop_size"):
            data[field] = tiny.data[field]
    config.data.worker_threads = 0
    config.model = tiny.model
    config.model.pretrained = ""
    config.batch_size_labeled = config.batch_size_unlabeled = 2
    config.total_steps = config.eval_every = config.checkpoint_every = config.log_every = 2
    config.eval_batch_size = 3
    config.adapt.student_init, config.adapt.cbst_quota = "teacher", "source"
    workdir = str(tmp_path / "st")
    summary = command.self_train(config, workdir, rounds=1)
    with open(os.path.join(workdir, "round_0", "config.json")) as f:
        assert json.load(f)["method"] == "dacs"
    # The student starts as its teacher, round 0's first net, written whole beside the round.
    teacher_file = os.path.join(workdir, "round_1", "teacher.cpsj")
    written = export.load(teacher_file).nets["left"]
    restored = command._restore(os.path.join(workdir, "round_0"), 7)
    for a, b in zip(jax.tree.leaves(written), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with open(os.path.join(workdir, "round_1", "run", "config.json")) as f:
        model = json.load(f)["model"]
    assert model["pretrained"] == teacher_file and model["pretrained_heads"] is True
    student = os.path.join(workdir, "round_1", "run", "config.json")
    with open(student) as f:
        assert json.load(f)["method"] == "supervised"
    assert [e["round"] for e in summary] == [0, 1]
    labels = summary[1]["pseudo_labels"]
    assert 0 < labels["kept"] <= 1
    # The quotas came from the source's label shares; the shares reported are those of the
    # pseudo-label files written and of the target's hidden masks.
    from PIL import Image

    from cps_jax import datasets, pseudo_folder

    data = datasets.load(config.data)
    np.testing.assert_allclose(labels["quota_shares"], self_training.label_shares(data.source.train, 7))
    folder = os.path.join(workdir, "round_1", "pseudo_labels", "masks", "target")
    written = np.zeros(7)
    truth = np.zeros(7)
    for i in range(len(data.train)):
        example = data.train[i]
        mask = np.asarray(Image.open(os.path.join(folder, pseudo_folder.ident_of(example) + ".png")))
        written += np.bincount(mask[mask < 7], minlength=7)
        true_mask = np.asarray(example["mask"]).squeeze()
        truth += np.bincount(true_mask[true_mask < 7], minlength=7)
    np.testing.assert_allclose(labels["share"], written / written.sum(), atol=1e-12)
    np.testing.assert_allclose(labels["true_share"], truth / truth.sum(), atol=1e-12)
