"""Whole-image, sliding-window, multi-scale and flip inference; evaluation of images of any size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cps_jax import datasets, evaluate, inference, parallel
from cps_jax.data.transforms import IGNORE_LABEL, normalize
from cps_jax.models.functional import apply_net, init_net
from configs import demo

C = 5
RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, C)).astype(np.float32)
B = RNG.normal(size=(3, C)).astype(np.float32)


def per_pixel(x):
    """Logits that depend on each pixel alone."""
    return x @ A


def with_context(x):
    """Per-pixel logits plus a term from the whole input (like ASPP's image pooling)."""
    return x @ A + jnp.mean(x, axis=(1, 2), keepdims=True) @ B


def batch_of(sizes, canvas, seed=1):
    """A canvas batch: random images at the top-left, zeros elsewhere."""
    rng = np.random.default_rng(seed)
    images = np.zeros((len(sizes), *canvas, 3), np.float32)
    for i, (h, w) in enumerate(sizes):
        images[i, :h, :w] = rng.normal(size=(h, w, 3))
    return images, np.asarray(sizes, np.int32)


def reference_sliding(model, image, window, stride):
    """The reference evaluator for one image: pad to the window, visit the grid, sum the logits of
    every window, then (cps_jax's convention) divide by the count."""
    h, w, _ = image.shape
    (wh, ww), (sh, sw) = window, stride
    padded = np.zeros((max(h, wh), max(w, ww), 3), np.float32)
    padded[:h, :w] = image
    total = np.zeros(padded.shape[:2] + (C,), np.float64)
    count = np.zeros(padded.shape[:2] + (1,), np.float64)
    for y in inference.window_starts(h, wh, sh):
        for x in inference.window_starts(w, ww, sw):
            total[y : y + wh, x : x + ww] += np.asarray(
                model(padded[None, y : y + wh, x : x + ww])
            )[0]
            count[y : y + wh, x : x + ww] += 1
    return (total / count)[:h, :w]


def test_window_grid_is_the_references():
    # Cityscapes at 2048x1024 with the reference's 800 window and ceil(2/3 * 800) = 534 stride.
    assert inference.default_stride((800, 800)) == (534, 534)
    assert inference.window_starts(1024, 800, 534) == [0, 224]
    assert inference.window_starts(2048, 800, 534) == [0, 534, 1068, 1248]
    assert inference.window_starts(500, 512, 342) == [0]  # smaller than the window: padded
    assert inference.window_starts(512, 512, 342) == [0]
    assert inference.window_starts(513, 512, 342) == [0, 1]


def test_canvas_is_the_largest_image_at_least_the_window_rounded_up():
    whole = inference.InferenceOptions(pad_multiple=8)
    assert inference.canvas_size([(20, 30), (25, 9)], whole) == (32, 32)
    assert inference.canvas_size([(20, 30), (25, 9)]) == (25, 30)
    sliding = inference.InferenceOptions(mode="sliding", window=(40, 12))
    assert inference.canvas_size([(20, 30)], sliding) == (40, 30)


def test_overlapping_windows_of_a_per_pixel_model_give_its_whole_image_logits():
    images, sizes = batch_of([(20, 30), (13, 17), (6, 5)], (20, 30))
    options = inference.InferenceOptions(mode="sliding", window=(8, 12), stride=(5, 7))
    out = np.asarray(
        jax.jit(lambda x, s: inference.predict_logits(per_pixel, x, s, options))(images, sizes)
    )
    for i, (h, w) in enumerate(sizes):
        np.testing.assert_allclose(out[i, :h, :w], images[i, :h, :w] @ A, rtol=1e-5, atol=1e-5)


def test_sliding_windows_are_placed_per_image_as_the_reference_does_alone():
    sizes = [(20, 30), (13, 17), (6, 5)]  # the last is smaller than the window: padded up to it
    images, sizes = batch_of(sizes, (20, 30))
    window, stride = (8, 12), (5, 7)
    options = inference.InferenceOptions(mode="sliding", window=window, stride=stride)
    out = np.asarray(
        jax.jit(lambda x, s: inference.predict_logits(with_context, x, s, options))(images, sizes)
    )
    for i, (h, w) in enumerate(sizes):
        expected = reference_sliding(with_context, images[i, :h, :w], window, stride)
        np.testing.assert_allclose(out[i, :h, :w], expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_net():
    config = demo.get_config("runlocal")
    graphdef, params, stats = init_net(config.model, C, 0)
    return lambda x: apply_net(graphdef, params, stats, x, train=False)[0]


@pytest.mark.slow
def test_sliding_equals_whole_image_when_the_window_covers_the_image(tiny_net):
    images, sizes = batch_of([(32, 48), (32, 48)], (32, 48))
    run = lambda options: np.asarray(  # noqa: E731
        jax.jit(lambda x, s: inference.predict_logits(tiny_net, x, s, options))(images, sizes)
    )
    whole = run(inference.InferenceOptions())
    sliding = run(inference.InferenceOptions(mode="sliding", window=(32, 48), stride=(8, 8)))
    np.testing.assert_allclose(sliding, whole, rtol=1e-5, atol=1e-5)
    # A window larger than the image: the image padded up to it, as a whole image would be.
    larger = run(inference.InferenceOptions(mode="sliding", window=(40, 64)))
    padded = np.pad(images, ((0, 0), (0, 8), (0, 16), (0, 0)))
    np.testing.assert_allclose(
        larger, np.asarray(tiny_net(padded))[:, :32, :48], rtol=1e-5, atol=1e-5
    )


def test_flip_averages_the_logits_of_the_mirrored_input():
    def column_model(x):
        """Channel 0: the column index within the input; channel 1: a per-pixel term."""
        columns = jnp.broadcast_to(jnp.arange(x.shape[2], dtype=jnp.float32), x.shape[:3])
        return jnp.stack([columns, x[..., 0] * 2.0], -1)

    images, sizes = batch_of([(4, 6)], (4, 6))
    options = inference.InferenceOptions(flip=True)
    out = np.asarray(inference.predict_logits(column_model, images, sizes, options))
    # (x + (W - 1 - x)) / 2 everywhere; the per-pixel term is unchanged by flipping twice.
    np.testing.assert_allclose(out[..., 0], np.full((1, 4, 6), 2.5))
    np.testing.assert_allclose(out[..., 1], images[..., 0] * 2.0, rtol=1e-6)


@pytest.mark.slow
def test_multi_scale_averages_the_logits_resized_back():
    def size_model(x):
        """Channel 0: the input's height squared; channel 1: a per-pixel linear term."""
        return jnp.stack([jnp.full(x.shape[:3], x.shape[1] ** 2, jnp.float32), x[..., 1]], -1)

    images = np.ones((1, 20, 30, 3), np.float32) * np.float32([0.5, -1.25, 2.0])  # constant image
    options = inference.InferenceOptions(scales=(0.5, 1.0, 1.5))
    out = np.asarray(inference.predict_logits(size_model, images, np.array([[20, 30]]), options))
    # The net saw 10, 20 and 30 rows; a constant resizes to itself.
    np.testing.assert_allclose(out[..., 0], np.full((1, 20, 30), (100 + 400 + 900) / 3), rtol=1e-5)
    np.testing.assert_allclose(out[..., 1], np.full((1, 20, 30), -1.25), rtol=1e-5)


def test_bad_options_name_the_config_field():
    with pytest.raises(ValueError, match=r"config\.eval\.mode.*'tiles'"):
        inference.InferenceOptions(mode="tiles")
    with pytest.raises(ValueError, match=r"config\.eval\.window"):
        inference.InferenceOptions(mode="sliding", window=(0, 4))
    with pytest.raises(ValueError, match=r"config\.eval\.scales"):
        inference.InferenceOptions(scales=())
    config = demo.get_config("runlocal")
    config.eval.mode = "sliding"  # an empty window is the training crop, an empty stride 2/3 of it
    options = inference.options_from_config(config)
    assert options.window_stride == ((32, 32), (22, 22))


def _mixed_size_data():
    rng = np.random.default_rng(3)
    examples = []
    for i, (h, w) in enumerate([(32, 48), (20, 36), (32, 48), (40, 24), (28, 28)]):
        mask = rng.integers(0, C, size=(h, w, 1)).astype(np.uint8)
        mask[: h // 4] = IGNORE_LABEL
        image = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
        examples.append({"image": image, "mask": mask, "id": f"ex{i}"})
    return datasets.SegmentationData(
        train=examples,
        validation=examples,
        class_names=tuple("abcde"),
        palette=np.zeros((C, 3), np.uint8),
        name="fake",
    )


@pytest.mark.slow
def test_eval_batches_of_mixed_sizes_give_the_per_image_confusion_matrix():
    config = demo.get_config("runlocal")
    graphdef, params, stats = init_net(config.model, C, 0)
    nets = {"left": {"params": params, "batch_stats": stats}}
    data = _mixed_size_data()
    options = inference.InferenceOptions(mode="sliding", window=(24, 24), stride=(16, 16))
    evaluator = evaluate.Evaluator(
        graphdef, data, split="validation", batch_size=2, mesh=parallel.make_mesh(), options=options
    )
    results, _ = evaluator.run(nets)

    # Each image alone, at its own size.
    alone = jax.jit(
        lambda x, s: evaluate.net_logits(graphdef, nets, x, s, options)["left"], static_argnums=()
    )
    confusion = np.zeros((C, C), np.int64)
    for example in data.validation:
        mask = example["mask"][..., 0].astype(np.int64)
        image = normalize(example["image"])[None]
        pred = np.asarray(alone(image, np.array([mask.shape]))).argmax(-1)[0]
        valid = mask != IGNORE_LABEL
        np.add.at(confusion, (mask[valid], pred[valid]), 1)
    assert len(np.unique(confusion.nonzero()[1])) > 1, "the check needs varied predictions"
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    np.testing.assert_allclose(results["left"]["iou"], tp / union, rtol=1e-6)
    assert results["left"]["pixel_accuracy"] == pytest.approx(tp.sum() / confusion.sum())
