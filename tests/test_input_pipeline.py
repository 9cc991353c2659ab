"""The grain training and evaluation pipelines, on small in-memory sources."""

import numpy as np
import pytest

from cps_jax import datasets, input_pipeline
from configs import demo

C = 4


def make_source(n=12, h=20, w=24, bad=None):
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        mask = rng.integers(0, C, size=(h, w, 1)).astype(np.uint8)
        image = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
        examples.append({"image": image, "mask": mask, "id": f"ex{i:03d}".encode()})
    if bad == "label":
        examples[5]["mask"][0, 0, 0] = 9
    elif bad == "size":
        examples[5]["image"] = examples[5]["image"][:-2]
    return examples


def make_data(source):
    return datasets.SegmentationData(
        train=source,
        validation=source,
        class_names=tuple("abcd"),
        palette=np.zeros((C, 3), np.uint8),
        name="fake",
    )


def small_config():
    config = demo.get_config("runlocal")
    config.data.crop_size = (16, 16)
    config.data.labeled_fraction = "1/4"
    return config


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_batches_have_the_configured_shapes_and_labeled_images_only_from_the_labeled_set():
    config = small_config()
    batch = next(iter(input_pipeline.train_dataset(config, make_data(make_source()))))
    assert batch["image_l"].shape == (2, 16, 16, 3) and batch["image_l"].dtype == np.float32
    assert batch["mask_l"].shape == (2, 16, 16) and batch["image_u"].shape == (2, 16, 16, 3)
    assert set(np.unique(batch["mask_l"])) <= set(range(C)) | {255}


def test_pipeline_is_deterministic_and_resumes_from_its_state():
    config, data = small_config(), make_data(make_source())
    first = iter(input_pipeline.train_dataset(config, data))
    take(first, 3)
    state = first.get_state()
    expected = take(first, 2)
    again = iter(input_pipeline.train_dataset(config, data))
    again.set_state(state)
    for a, b in zip(expected, take(again, 2)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_hosts_rows_concatenate_to_the_single_host_global_batch():
    config, data = small_config(), make_data(make_source())
    config.batch_size_labeled, config.batch_size_unlabeled = 2, 4
    single = take(iter(input_pipeline.train_dataset(config, data)), 3)
    hosts = [
        take(iter(input_pipeline.train_dataset(config, data, process_index=p, process_count=2)), 3)
        for p in range(2)
    ]
    for step in range(3):
        for key in single[step]:
            assert hosts[0][step][key].shape[0] == single[step][key].shape[0] // 2
            joined = np.concatenate([hosts[0][step][key], hosts[1][step][key]])
            np.testing.assert_array_equal(joined, single[step][key])
    config.batch_size_labeled = 3
    with pytest.raises(ValueError, match="config.batch_size_labeled: batch size 3 must divide"):
        input_pipeline.train_dataset(config, data, process_count=2)


def test_eval_batches_pad_the_last_batch_without_dropping_images():
    source = make_source(n=7)
    batches = list(input_pipeline.eval_batches(source, batch_size=3, num_classes=C, split="fake"))
    assert len(batches) == 3
    weights = np.concatenate([b["weight"] for b in batches])
    np.testing.assert_array_equal(weights, [1] * 7 + [0] * 2)
    indices = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(indices[:7], np.arange(7))
    np.testing.assert_array_equal(batches[0]["mask"][1], source[1]["mask"][..., 0])


@pytest.mark.parametrize(
    "bad,message",
    [
        ("label", r"id=ex005.*9"),
        ("size", r"id=ex005.*\(18, 24.*\(20, 24|id=ex005.*\(20, 24.*\(18, 24"),
    ],
)
def test_bad_examples_fail_with_a_clear_error(bad, message):
    source = make_source(bad=bad)
    with pytest.raises(ValueError, match=message):
        list(input_pipeline.eval_batches(source, batch_size=4, num_classes=C, split="fake"))


def test_data_classes_keeps_named_classes_and_ignores_the_rest(tmp_path):
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path)
    full = datasets.load(config.data)
    config.data.classes = ("sky", "road")
    data = datasets.load(config.data)
    assert data.class_names == ("sky", "road") and data.num_classes == 2
    np.testing.assert_array_equal(
        data.palette, full.palette[[full.class_names.index("sky"), full.class_names.index("road")]]
    )
    for split in ("train", "validation"):
        original, restricted = getattr(full, split)[0]["mask"], getattr(data, split)[0]["mask"]
        sky, road = full.class_names.index("sky"), full.class_names.index("road")
        expected = np.where(original == sky, 0, np.where(original == road, 1, 255))
        np.testing.assert_array_equal(restricted, expected)
        assert (restricted == 0).any() and (restricted == 255).any()
    config.data.classes = ("sky", "lamp")
    with pytest.raises(ValueError, match="config.data.classes"):
        datasets.load(config.data)
