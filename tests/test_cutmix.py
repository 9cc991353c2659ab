"""CutMix box masks and mixing, against an independent NumPy computation of their statistics."""

import jax
import pytest
import jax.numpy as jnp
import numpy as np
import ml_collections

from cps_jax import cutmix
from cps_jax.methods.cross_term import CrossTerm
from configs import demo


def cutmix_config(num_boxes=3):
    config = ml_collections.ConfigDict()
    config.num_boxes, config.area_range, config.random_aspect_ratio = num_boxes, (0.25, 0.5), True
    config.grid = 1
    return config


def expected_mask_mean(height, width, num_boxes=3, area_range=(0.25, 0.5), grid=400):
    """E[mean of the XOR mask], by integrating the box-size distribution on a grid and enumerating
    the (rounded, uniform) box positions exactly. Boxes are i.i.d., so a pixel is 1 with probability
    (1 - (1 - 2q)^n) / 2, q being the probability that one box covers it."""
    u = (np.arange(grid) + 0.5) / grid
    area = area_range[0] + (area_range[1] - area_range[0]) * u[:, None]
    h_share = np.exp(u[None, :] * np.log(area))
    w_share = area / h_share
    scale = np.sqrt(1.0 / num_boxes)
    sizes_h = np.round(h_share * scale * height).astype(int).ravel()
    sizes_w = np.round(w_share * scale * width).astype(int).ravel()

    def coverage(side, sizes):
        """[len(sizes), side]: P(a box of that size covers each coordinate)."""
        out = np.zeros((len(sizes), side))
        for i, s in enumerate(sizes):
            free = side - s
            if free == 0:
                out[i, :s] = 1
                continue
            p_pos = np.full(free + 1, 1.0 / free)
            p_pos[[0, -1]] = 0.5 / free  # rounding: the two ends get half the mass
            for start, p in enumerate(p_pos):
                out[i, start : start + s] += p
        return out

    cov_h, cov_w = coverage(height, sizes_h), coverage(width, sizes_w)
    q = np.einsum("ky,kx->yx", cov_h, cov_w) / len(sizes_h)
    return float(np.mean((1 - (1 - 2 * q) ** num_boxes) / 2))


def test_masks_are_binary_with_the_requested_shape():
    masks = np.asarray(cutmix.box_masks(jax.random.key(0), 16, 24, 40, cutmix_config()))
    assert masks.shape == (16, 24, 40)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert 0 < masks.mean() < 1


def test_a_single_box_is_one_filled_rectangle_inside_the_image():
    config = cutmix_config(num_boxes=1)
    masks = np.asarray(cutmix.box_masks(jax.random.key(1), 200, 30, 50, config))
    for mask in masks:
        rows, cols = np.nonzero(mask)
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a solid rectangle, hence entirely inside the image
        assert mask.sum() == box.size
        # Area between the configured proportions, up to rounding of each side.
        area = box.size / mask.size
        assert 0.25 * 0.8 <= area <= 0.5 * 1.2


def test_grid_boxes_keep_each_grid_cell_within_one_image_and_grid_one_is_the_reference():
    config = cutmix_config(num_boxes=1)
    config.grid = 8
    masks = np.asarray(cutmix.box_masks(jax.random.key(4), 300, 32, 48, config))
    cells = masks.reshape(300, 4, 8, 6, 8)
    np.testing.assert_array_equal(cells.min((2, 4)), cells.max((2, 4)))  # no cell holds two images
    for mask in masks:  # one solid box of whole cells, from 8 px up
        rows, cols = np.nonzero(mask)
        assert rows.min() % 8 == 0 and cols.min() % 8 == 0 and (rows.max() + 1) % 8 == 0
        assert mask.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) >= 64
    three = cutmix_config()
    reference = np.asarray(cutmix.box_masks(jax.random.key(5), 50, 24, 40, three))
    assert (reference.reshape(50, 3, 8, 5, 8).std((2, 4)) > 0).any()  # the reference's boxes cut cells
    three.grid = 1
    np.testing.assert_array_equal(cutmix.box_masks(jax.random.key(5), 50, 24, 40, three), reference)
    three.grid = 16
    with pytest.raises(ValueError, match="config.cutmix.grid must be a positive divisor .* got 16 for 24x40"):
        cutmix.box_masks(jax.random.key(5), 50, 24, 40, three)


@pytest.mark.slow
def test_mean_mixed_proportion_matches_the_analytic_expectation_of_three_xored_boxes():
    height, width = 32, 48
    masks = cutmix.box_masks(jax.random.key(2), 6000, height, width, cutmix_config())
    empirical = float(jnp.mean(masks))
    expected = expected_mask_mean(height, width)
    assert abs(empirical - expected) / expected < 0.02, (empirical, expected)


def test_mixing_with_all_zero_or_all_one_masks_returns_either_batch():
    u0 = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
    u1 = np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(cutmix.mix(u0, u1, np.zeros((2, 5, 6))), u0)
    np.testing.assert_array_equal(cutmix.mix(u0, u1, np.ones((2, 5, 6))), u1)


@pytest.mark.slow
def test_the_same_mask_mixes_images_and_pseudo_labels():
    mask = cutmix.box_masks(jax.random.key(3), 4, 12, 16, cutmix_config())
    u0, u1 = np.zeros((4, 12, 16, 3), np.float32), np.ones((4, 12, 16, 3), np.float32)
    mixed_image = np.asarray(cutmix.mix(u0, u1, mask))[..., 0]
    # A net that predicts class 0 on u0 and class 2 on u1: its mixed pseudo label is 2 exactly
    # where the mixed image came from u1.
    logits_0 = np.zeros((4, 12, 16, 3), np.float32)
    logits_0[..., 0] = 5
    logits_1 = np.zeros((4, 12, 16, 3), np.float32)
    logits_1[..., 2] = 5
    sources = {"left": [logits_0, logits_1]}
    for consistency in ("cps", "cpc"):
        config = demo.get_config("runlocal")
        config.loss.consistency = consistency
        target = CrossTerm.from_config(config).mixed_targets(sources, mask, {})["left"]
        labels = np.asarray(target.labels if consistency == "cps" else target.argmax(-1))
        np.testing.assert_array_equal(labels == 2, mixed_image == 1, err_msg=consistency)
