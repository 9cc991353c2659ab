"""The patches + matmul convolution equals XLA's native one, values and gradients, for every
stride / dilation / padding the models use; the model's output does not depend on conv_impl."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from cps_jax.models import build_model
from cps_jax.models.conv import conv_general_dilated_for, conv_patches, max_pool, resolve_impl
from configs import demo

DN = ("NHWC", "HWIO", "NHWC")
HIGHEST = lax.Precision.HIGHEST

# (kernel, stride, dilation, padding): ResNet stems, bottlenecks, downsamples, ASPP, decoder,
# plus odd sizes, asymmetric, "SAME"/"VALID" and negative (cropping) padding.
CASES = [
    (1, 1, 1, ((0, 0), (0, 0))),
    (1, 2, 1, ((0, 0), (0, 0))),
    (3, 1, 1, ((1, 1), (1, 1))),
    (3, 2, 1, ((1, 1), (1, 1))),
    (3, 1, 2, ((2, 2), (2, 2))),
    (3, 1, 4, ((4, 4), (4, 4))),
    (3, 1, 6, ((6, 6), (6, 6))),
    (3, 1, 12, ((12, 12), (12, 12))),
    (7, 2, 1, ((3, 3), (3, 3))),
    (3, 2, 1, ((0, 1), (2, 0))),
    (3, 1, 1, ((-1, 0), (1, -1))),
    (3, 2, 1, "SAME"),
    (3, 1, 2, "VALID"),
]


def conv_pair(kernel, stride, dilation, padding, shape=(2, 13, 11, 5), cout=7, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, shape[-1], cout)), jnp.float32)

    def run(fn):
        return lambda x, w: fn(
            x,
            w,
            (stride, stride),
            padding,
            rhs_dilation=(dilation, dilation),
            dimension_numbers=DN,
            precision=HIGHEST,
        )

    return x, w, run(lax.conv_general_dilated), run(conv_patches)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,stride,dilation,padding", CASES)
def test_patches_equal_native_forward_and_gradients(kernel, stride, dilation, padding):
    x, w, native, patches = conv_pair(kernel, stride, dilation, padding)
    y_ref, y = native(x, w), patches(x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
    grads_ref = jax.grad(lambda x, w: jnp.vdot(native(x, w), g), argnums=(0, 1))(x, w)
    grads = jax.jit(jax.grad(lambda x, w: jnp.vdot(patches(x, w), g), argnums=(0, 1)))(x, w)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_patches_against_numpy_direct_sum():
    """Independent of XLA: y[n,o,p,:] = sum_ij x_pad[n, o*s + i*d, p*s + j*d, :] @ w[i, j]."""
    x, w, _, patches = conv_pair(3, 2, 2, ((2, 1), (2, 2)), shape=(1, 9, 8, 3), cout=4)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (2, 1), (2, 2), (0, 0)))
    wn = np.asarray(w, np.float64)
    ho, wo = (xp.shape[1] - 5) // 2 + 1, (xp.shape[2] - 5) // 2 + 1
    want = np.zeros((1, ho, wo, 4))
    for o in range(ho):
        for p in range(wo):
            for i in range(3):
                for j in range(3):
                    want[0, o, p] += xp[0, o * 2 + i * 2, p * 2 + j * 2] @ wn[i, j]
    np.testing.assert_allclose(patches(x, w), want, rtol=1e-5, atol=1e-5)


def test_unsupported_forms_fall_back_to_native():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)
    args = ((1, 1), ((1, 1), (1, 1)))
    kw = dict(dimension_numbers=DN, feature_group_count=2, lhs_dilation=(2, 2), precision=HIGHEST)
    np.testing.assert_allclose(
        conv_patches(x, w, *args, **kw), lax.conv_general_dilated(x, w, *args, **kw), rtol=1e-5
    )


def numpy_max_pool(x, k, s, p):
    n, h, w, c = x.shape
    xp = np.full((n, h + 2 * p, w + 2 * p, c), -np.inf, x.dtype)
    xp[:, p : p + h, p : p + w] = x
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, ho, wo, c), x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = xp[:, i * s : i * s + k, j * s : j * s + k].max(axis=(1, 2))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 12, 10, 3), (1, 13, 9, 4), (2, 2, 3, 2)])
@pytest.mark.parametrize("window,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_max_pool_views_equal_reduce_window(shape, window, stride, padding):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)  # no ties
    expected = numpy_max_pool(x, window, stride, padding)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=expected.shape), jnp.float32)
    grads = {}
    for impl in ("xla", "patches", "auto"):
        y, vjp = jax.vjp(lambda v: max_pool(v, window, stride, padding, impl=impl), jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(y), expected, err_msg=impl)
        grads[impl] = np.asarray(vjp(dy)[0])
    # Each output's gradient goes to its window's (unique) maximum, as XLA's select-and-scatter.
    np.testing.assert_array_equal(grads["patches"], grads["xla"])
    np.testing.assert_array_equal(grads["auto"], grads["xla"])
    assert np.count_nonzero(grads["xla"]) > 0


def test_impl_names_and_the_auto_rule():
    assert resolve_impl("xla", (3, 3, 256, 256)) == "xla"
    if jax.default_backend() == "cpu":
        assert resolve_impl("auto", (1, 1, 64, 256)) == "patches"  # 1x1: one plain matmul
        for window in ((3, 3, 512, 512), (3, 3, 3, 64), (7, 7, 3, 64)):  # any other: XLA's
            assert resolve_impl("auto", window) == "xla"
        assert resolve_impl("auto") == "patches"  # no kernel: max_pool takes the views
    else:
        assert resolve_impl("auto", (1, 1, 64, 256)) == "xla"
    assert conv_general_dilated_for("xla") is lax.conv_general_dilated
    with pytest.raises(ValueError, match="model.conv_impl"):
        conv_general_dilated_for("im2col")


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [8, 16])
def test_model_output_independent_of_conv_impl(output_stride):
    config = demo.get_config("runlocal").model
    config.output_stride = output_stride
    # Batch 8: train-mode BatchNorm over 2 images (the image-pooling BN sees 2 values) amplifies
    # rounding differences between the algorithms beyond what they are.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 32, 32, 3)), jnp.float32)
    outputs = {}
    for impl in ("xla", "patches", "auto"):
        config.conv_impl = impl
        model = build_model(config, 5, nnx.Rngs(0))
        outputs[impl] = model(x, train=True)
    for impl in ("patches", "auto"):
        np.testing.assert_allclose(outputs[impl], outputs["xla"], rtol=1e-4, atol=1e-4)
