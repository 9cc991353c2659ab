import numpy as np
import pytest

from cps_jax.data.transforms import (
    IGNORE_LABEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_or_pad,
    eval_transform,
    hflip,
    normalize,
    rescale,
    train_transform,
    validate_example,
)


def _random_example(h=37, w=53, num_classes=5, seed=0):
    r = np.random.default_rng(seed)
    image = r.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    mask = r.integers(0, num_classes, size=(h, w), dtype=np.uint8)
    return image, mask


def _column_example(h=20, w=40):
    """Image whose every channel holds the column index, and a mask holding the same index."""
    cols = np.broadcast_to(np.arange(w, dtype=np.uint8), (h, w))
    return np.repeat(cols[..., None], 3, axis=-1).copy(), cols.copy()


def _denormalize(image):
    return np.rint((image * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)) * 255.0)


def test_normalize_matches_formula():
    image, _ = _random_example()
    out = normalize(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    expected = (image.astype(np.float64) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_hflip():
    image, mask = _random_example()
    fi, fm = hflip(image, mask)
    np.testing.assert_array_equal(fi, image[:, ::-1])
    np.testing.assert_array_equal(fm, mask[:, ::-1])


@pytest.mark.parametrize(
    "scale, hw", [(0.5, (19, 27)), (0.75, (28, 40)), (1.5, (56, 80)), (2.0, (74, 106))]
)
def test_rescale_sizes_and_nearest_labels(scale, hw):
    image, mask = _random_example(37, 53, num_classes=4)
    mask[:5] = IGNORE_LABEL
    ri, rm = rescale(image, mask, scale)
    assert ri.shape == hw + (3,) and ri.dtype == np.uint8
    assert rm.shape == hw and rm.dtype == np.uint8
    assert set(np.unique(rm)) <= set(np.unique(mask))  # nearest: no interpolated labels


def test_rescale_accepts_channel_mask():
    image, mask = _random_example()
    _, rm = rescale(image, mask[..., None], 2.0)
    assert rm.shape == (74, 106)


def test_crop_or_pad_centred_padding():
    h, w, ch, cw = 3, 4, 8, 9  # pad 5 rows (2 top, 3 bottom) and 5 cols (2 left, 3 right)
    image = np.full((h, w, 3), 7.0, np.float32)
    mask = np.full((h, w), 1, np.uint8)
    ci, cm = crop_or_pad(image, mask, (ch, cw), None, np.random.default_rng(0))
    assert ci.shape == (ch, cw, 3) and cm.shape == (ch, cw)
    inside = np.zeros((ch, cw), bool)
    inside[2 : 2 + h, 2 : 2 + w] = True
    assert np.all(ci[inside] == 7.0) and np.all(cm[inside] == 1)
    assert np.all(ci[~inside] == 0.0)  # exactly 0.0: the mean colour after normalising
    assert np.all(cm[~inside] == IGNORE_LABEL)


def test_crop_or_pad_offsets():
    image = np.arange(10 * 12 * 3, dtype=np.float32).reshape(10, 12, 3)
    mask = np.arange(10 * 12).reshape(10, 12)
    ci, cm = crop_or_pad(image, mask, (4, 5), (3, 6), None)
    np.testing.assert_array_equal(ci, image[3:7, 6:11])
    np.testing.assert_array_equal(cm, mask[3:7, 6:11])
    with pytest.raises(ValueError, match="offset"):
        crop_or_pad(image, mask, (4, 5), (7, 0), None)
    # Random offsets stay in range and cover several positions.
    rng = np.random.default_rng(0)
    corners = {int(crop_or_pad(image, mask, (4, 5), None, rng)[1][0, 0]) for _ in range(50)}
    assert len(corners) > 5 and all(c // 12 <= 6 and c % 12 <= 7 for c in corners)


@pytest.mark.parametrize("seed", range(8))
def test_train_transform_flip_consistency(seed):
    """Image and mask stay aligned under flip + crop + padding (scale 1.0 keeps values exact)."""
    image, mask = _column_example(h=20, w=40)
    out = train_transform(image, mask, np.random.default_rng(seed), crop_hw=(24, 32), scales=(1.0,))
    img, msk = out["image"], out["mask"]
    assert img.shape == (24, 32, 3) and img.dtype == np.float32
    assert msk.shape == (24, 32) and msk.dtype == np.int32
    valid = msk != IGNORE_LABEL
    assert valid.sum() == 20 * 32  # 4 padded rows, all columns cropped from the image
    assert np.all(img[~valid] == 0.0)
    cols = _denormalize(img)
    for c in range(3):
        np.testing.assert_array_equal(cols[..., c][valid], msk[valid])
    # Columns run consecutively left-to-right (not flipped) or right-to-left (flipped).
    row = msk[valid.any(axis=1)][0]
    assert np.all(np.diff(row) == 1) or np.all(np.diff(row) == -1)


def test_train_transform_flips_about_half_the_time():
    image, mask = _column_example()
    flipped = [
        train_transform(image, mask, np.random.default_rng(s), crop_hw=(20, 40), scales=(1.0,))[
            "mask"
        ][0, 0]
        == 39
        for s in range(40)
    ]
    assert 5 < sum(flipped) < 35
    no_flip = train_transform(
        image, mask, np.random.default_rng(0), crop_hw=(20, 40), scales=(1.0,), flip=False
    )
    np.testing.assert_array_equal(no_flip["mask"], mask)


def test_train_transform_deterministic_and_scales():
    image, mask = _random_example(37, 53)
    kw = dict(crop_hw=(32, 32))
    a = train_transform(image, mask[..., None], np.random.default_rng(3), **kw)
    b = train_transform(image, mask[..., None], np.random.default_rng(3), **kw)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    outs = [train_transform(image, mask, np.random.default_rng(s), **kw)["mask"] for s in range(10)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    for o in outs:
        assert o.shape == (32, 32)
        assert set(np.unique(o)) <= set(np.unique(mask)) | {IGNORE_LABEL}


def test_eval_transform_pads_bottom_right():
    image, mask = _random_example(5, 6)
    out = eval_transform(image, mask, pad_hw=(8, 10))
    assert out["image"].shape == (8, 10, 3) and out["mask"].dtype == np.int32
    np.testing.assert_array_equal(out["mask"][:5, :6], mask)
    np.testing.assert_allclose(out["image"][:5, :6], normalize(image))
    assert np.all(out["mask"][5:] == IGNORE_LABEL) and np.all(out["mask"][:, 6:] == IGNORE_LABEL)
    assert np.all(out["image"][5:] == 0.0) and np.all(out["image"][:, 6:] == 0.0)
    assert eval_transform(image, mask)["image"].shape == (5, 6, 3)
    with pytest.raises(ValueError, match="pad_hw"):
        eval_transform(image, mask, pad_hw=(4, 10))


SRC = "synthetic_streets/train id=train_000017"


def test_validate_example_accepts_good():
    image, mask = _random_example(num_classes=19)
    mask[0, 0] = IGNORE_LABEL
    # Valid examples pass silently: no exception, nothing returned.
    assert validate_example(image, mask, num_classes=19, source=SRC) is None
    assert validate_example(image, mask[..., None], num_classes=19, source=SRC) is None


def test_validate_example_shape_mismatch():
    image, _ = _random_example(10, 12)
    with pytest.raises(ValueError) as e:
        validate_example(image, np.zeros((10, 11), np.uint8), num_classes=3, source=SRC)
    msg = str(e.value)
    assert SRC in msg and "(10, 12, 3)" in msg and "(10, 11)" in msg


@pytest.mark.parametrize(
    "bad_image",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)],
)
def test_validate_example_bad_image(bad_image):
    with pytest.raises(ValueError) as e:
        validate_example(bad_image, np.zeros((4, 4), np.uint8), num_classes=3, source=SRC)
    assert SRC in str(e.value) and "uint8 [H,W,3]" in str(e.value)


def test_validate_example_bad_labels():
    image, mask = _random_example(num_classes=3)
    mask[0, 0], mask[1, 1] = 7, 200
    with pytest.raises(ValueError) as e:
        validate_example(image, mask, num_classes=3, source=SRC)
    msg = str(e.value)
    assert SRC in msg and "7" in msg and "200" in msg and "[0, 3)" in msg and "255" in msg
