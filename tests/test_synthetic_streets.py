"""The embedded `synthetic_streets` data set: renderer properties and the TFDS builder."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from cps_jax.data import palette
from cps_jax.data import synthetic_streets as ss

H, W = 48, 96


@functools.lru_cache(maxsize=None)
def scene(seed, domain="photo", height=H, width=W):
    image, mask = ss.render_scene(seed, height, width, domain)
    image.flags.writeable = mask.flags.writeable = False
    return image, mask


def test_constants():
    assert ss.NUM_CLASSES == len(ss.CLASS_NAMES) >= 9
    assert ss.IGNORE_LABEL == 255
    assert ss.PALETTE.shape == (ss.NUM_CLASSES, 3) and ss.PALETTE.dtype == np.uint8
    assert len(set(map(tuple, ss.PALETTE.tolist()))) == ss.NUM_CLASSES
    for name in (
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "vegetation",
        "sky",
        "person",
        "car",
    ):
        assert name in ss.CLASS_NAMES
    assert tuple(ss.PALETTE[ss.CLASS_NAMES.index("road")]) == (128, 64, 128)  # Cityscapes
    assert tuple(ss.PALETTE[ss.CLASS_NAMES.index("car")]) == (0, 0, 142)
    assert palette.colorize(np.array([[0, 255]], np.uint8)).tolist() == [
        [[128, 64, 128], [0, 0, 0]]
    ]


def test_shapes_and_determinism():
    for seed in (0, 7):
        image, mask = ss.render_scene(seed, H, W)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert mask.shape == (H, W) and mask.dtype == np.uint8
        again = ss.render_scene(seed, H, W)
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(mask, again[1])
    a, b = scene(0), scene(1)
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    # other sizes work too (and stay in range)
    image, mask = ss.render_scene(3, 37, 131, "render")
    assert image.shape == (37, 131, 3) and mask.max() < ss.NUM_CLASSES
    with pytest.raises(ValueError):
        ss.render_scene(0, H, W, "cartoon")


def test_mask_values_and_class_coverage():
    seen, road, sky = set(), 0, 0
    for seed in range(20):
        _, mask = scene(seed)
        assert mask.max() < ss.NUM_CLASSES
        present = set(np.unique(mask).tolist())
        seen |= present
        road += palette.ROAD in present
        sky += palette.SKY in present
    assert len(seen) >= 6, seen
    assert road >= 18 and sky >= 18, (road, sky)
    for name in ("road", "sidewalk", "building", "vegetation", "sky", "car"):
        assert ss.CLASS_NAMES.index(name) in seen, name
    # roughly a street: road dominates the bottom rows, sky / buildings the top rows
    masks = np.stack([scene(seed)[1] for seed in range(20)])
    assert np.mean(masks[:, -3:] == palette.ROAD) > 0.5
    assert np.mean(np.isin(masks[:, :3], [palette.SKY, palette.BUILDING])) > 0.5


def test_multi_hot_classes_match_mask():
    for seed in range(3):
        key, ex = ss._make_example(("train", seed, 5, H, W, "photo"))
        assert key == ex["id"] == f"train_{seed:06d}"
        _, mask = ss.render_scene(ss.example_seed(5, "train", seed), H, W)
        expected = np.zeros(ss.NUM_CLASSES, np.uint8)
        expected[np.unique(mask)] = 1
        np.testing.assert_array_equal(ex["classes"], expected)
        assert ex["classes"].dtype == np.uint8
        assert isinstance(ex["image"], bytes) and ex["image"][:4] == b"\x89PNG"


def _interior_laplacian(image, mask):
    """Median |Laplacian| of the grey image over pixels whose 3x3 neighbourhood is one class."""
    g = image.astype(np.float32).mean(-1)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    c = mask[1:-1, 1:-1]
    same = np.ones(c.shape, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= mask[dy : dy + c.shape[0], dx : dx + c.shape[1]] == c
    return float(np.median(lap[same]))


def test_render_and_photo_domains_share_layout():
    for seed in range(10):
        photo, mask_p = scene(seed, "photo")
        flat, mask_r = scene(seed, "render")
        np.testing.assert_array_equal(mask_p, mask_r)
        np.testing.assert_array_equal(scene(seed, "weather")[1], mask_p)
        assert np.abs(photo.astype(int) - flat.astype(int)).mean() > 5
        # texture and sensor noise: high-frequency energy inside regions
        lp, lr = _interior_laplacian(photo, mask_p), _interior_laplacian(flat, mask_r)
        assert lp > lr + 2.0, (seed, lp, lr)
        assert lr < 1.0, (seed, lr)  # render is flat inside regions


def test_weather_conditions_are_drawn_as_often_as_stated():
    n = 3000
    drawn = [ss.scene_condition(seed) for seed in range(n)]
    assert sum(ss.CONDITION_PROBS) == pytest.approx(1.0)
    for name, p in zip(ss.CONDITIONS, ss.CONDITION_PROBS, strict=True):
        # within 4.5 binomial standard deviations
        assert abs(drawn.count(name) - n * p) < 4.5 * np.sqrt(n * p * (1 - p)), name


def _seeds_by_condition(per_condition=3):
    found = {name: [] for name in ss.CONDITIONS}
    seed = 0
    while min(map(len, found.values())) < per_condition:
        found[ss.scene_condition(seed)].append(seed)
        seed += 1
    return {name: seeds[:per_condition] for name, seeds in found.items()}


def _depth(seed):
    return ss.render_layers(seed, H, W, "weather")[2]


def _luma(image):
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _saturation(image):
    x = image.astype(np.float64)
    return float((x.max(-1) - x.min(-1)).mean())


def test_weather_domain_changes_appearance_as_its_condition_says():
    """`weather` keeps the layout and, for clear scenes, every pixel of `photo`; overcast, rain and
    fog grey the scene; fog also hides what is far; dusk and night darken it."""
    for name, seeds in _seeds_by_condition().items():
        for seed in seeds:
            image, mask = scene(seed, "weather")
            photo, photo_mask = scene(seed, "photo")
            np.testing.assert_array_equal(mask, photo_mask)
            if name == "clear":
                np.testing.assert_array_equal(image, photo)
                continue
            assert np.abs(image.astype(int) - photo.astype(int)).mean() > 5, (name, seed)
            if name in ("overcast", "rain", "fog"):
                assert _saturation(image) < 0.8 * _saturation(photo), (name, seed)
            if name == "fog":  # things beyond 25 m fade into one grey
                depth = _depth(seed)
                far = np.isfinite(depth) & (depth > 25)
                spread = [x[far].astype(float).std(0).mean() for x in (image, photo)]
                assert far.sum() > 100 and spread[0] < 0.6 * spread[1], (seed, spread)
            if name in ("dusk", "night"):
                assert _luma(image).mean() < 0.8 * _luma(photo).mean(), (name, seed)
            if name == "night":
                sky = mask == ss.CLASS_NAMES.index("sky")
                assert _luma(image)[sky].mean() < 40, seed


def test_appearance_varies_across_scenes():
    """Per-class mean colours spread widely, so a few labelled images cannot cover them."""
    for name, min_std in (("car", 15.0), ("building", 15.0), ("road", 15.0), ("sky", 15.0)):
        cls = ss.CLASS_NAMES.index(name)
        means = []
        for seed in range(50):
            image, mask = scene(seed)
            if (mask == cls).sum() >= 10:
                means.append(image[mask == cls].mean(0))
        assert len(means) >= 20, name
        spread = np.std(np.asarray(means), axis=0).mean()
        assert spread > min_std, (name, spread)


def _check_prepared(b, num_train, num_validation, seed=0):
    counts = {"train": num_train, "validation": num_validation}
    ids = {}
    for split, n in counts.items():
        src = b.as_data_source(split=split)
        assert len(src) == n
        ids[split] = [src[i]["id"].decode() for i in range(n)]
        assert len(set(ids[split])) == n
        assert sorted(int(i.rsplit("_", 1)[1]) for i in ids[split]) == list(range(n))
        ex = src[n // 2]
        index = int(ex["id"].decode().rsplit("_", 1)[1])
        image, mask = ss.render_scene(ss.example_seed(seed, split, index), H, W)
        assert ex["image"].shape == (H, W, 3) and ex["mask"].shape == (H, W, 1)
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["mask"][..., 0], mask)
        np.testing.assert_array_equal(np.flatnonzero(ex["classes"]), np.unique(mask))
    seeds = {
        split: {ss.example_seed(seed, split, int(i.rsplit("_", 1)[1])) for i in v}
        for split, v in ids.items()
    }
    assert not seeds["train"] & seeds["validation"]


def test_tfds_builder(tmp_path):
    b = ss.prepare(str(tmp_path), height=H, width=W, num_train=12, num_validation=5, seed=3)
    assert b.name == "synthetic_streets"
    assert "48x96" in b.builder_config.name and "train12" in b.builder_config.name
    _check_prepared(b, 12, 5, seed=3)
    # different parameters live in a different directory; preparing again reuses the data
    other = ss.builder(str(tmp_path), height=H, width=W, num_train=12, num_validation=5, seed=4)
    assert other.data_dir != b.data_dir
    again = ss.prepare(str(tmp_path), height=H, width=W, num_train=12, num_validation=5, seed=3)
    assert again.data_dir == b.data_dir and len(again.as_data_source(split="train")) == 12
    # the validation split of one data-set seed never reuses a training scene of another
    assert ss.example_seed(0, "validation", 0) not in {
        ss.example_seed(s, "train", i) for s in range(3) for i in range(100)
    }


def test_cli_with_worker_processes(tmp_path):
    """The command line prepares with 2 forked workers (in a fresh process, without JAX)."""
    env = dict(os.environ, CPS_DATA_WORKERS="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cps_jax.data.synthetic_streets",
            "--data_dir",
            str(tmp_path),
            "--height",
            str(H),
            "--width",
            str(W),
            "--num_train",
            "40",
            "--num_validation",
            "4",
        ],
        check=True,
        env=env,
        cwd=root,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    b = ss.builder(str(tmp_path), height=H, width=W, num_train=40, num_validation=4)
    _check_prepared(b, 40, 4)  # counts, unique ids, pixel-exact read-back against render_scene
