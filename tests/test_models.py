import math
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from cps_jax.models import (
    DeepLabV3Plus,
    ResNet,
    build_model,
    interpolation_matrix,
    resize_bilinear_align_corners,
)
from cps_jax.models.resnet import BatchNorm

TINY = dict(width=8, aspp_channels=16, low_level_channels=8, decoder_channels=16)


def tiny_model(seed=0, **kw):
    # Eager: the first build compiles each init op (~10 s on CPU), later builds hit the cache.
    return DeepLabV3Plus(5, **{"backbone_depth": 18, **TINY, **kw}, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def tiny():
    """A real (allocated) ResNet-18 DeepLabv3+ at width 8, shared read-only by several tests."""
    return tiny_model(output_stride=16)


def abstract_forward(model_fn, x_shape, train=True, call=lambda m, x, train: m(x, train=train)):
    """Shapes of ``call(model, x)`` without allocating params or computing anything."""
    model = nnx.eval_shape(model_fn)
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return call(nnx.merge(graphdef, state), x, train)

    return model, jax.eval_shape(forward, state, jax.ShapeDtypeStruct(x_shape, jnp.float32))


def _forward_and_features(model, x, train):
    return model(x, train=train), model.backbone(x, train=train)


@partial(jax.jit, static_argnums=(0, 3))
def _apply(graphdef, state, x, train):
    model = nnx.merge(graphdef, state)
    out = _forward_and_features(model, x, train)
    return out, nnx.state(model)


def apply(model, x, *, train):
    """(logits, backbone features) through the functional jit core; BN updates written back."""
    graphdef, state = nnx.split(model)
    out, state = _apply(graphdef, state, x, train)
    nnx.update(model, state)
    return out


def num_params(module):
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


# ---------------------------------------------------------------- shapes and strides


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["deep", "torchvision"])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("depth", [18, 50, 101])
def test_output_and_feature_shapes(depth, output_stride, stem):
    n, h, w = 2, 64, 96
    _, (logits, feats) = abstract_forward(
        lambda: tiny_model(backbone_depth=depth, output_stride=output_stride, stem=stem),
        (n, h, w, 3),
        call=lambda m, x, train: (m(x, train=train), m.backbone(x, train=train)),
    )
    assert logits.shape == (n, h, w, 5) and logits.dtype == jnp.float32

    expansion = 1 if depth < 50 else 4
    strides = {
        "stem": 2,
        "layer1": 4,
        "layer2": 8,
        "layer3": min(16, output_stride),
        "layer4": output_stride,
    }
    channels = {
        "stem": 16 if stem == "deep" else 8,
        "layer1": 8 * expansion,
        "layer2": 16 * expansion,
        "layer3": 32 * expansion,
        "layer4": 64 * expansion,
    }
    assert set(feats) == set(strides)
    for name, s in strides.items():
        assert feats[name].shape == (n, h // s, w // s, channels[name]), name


def test_odd_input_size_real_forward(tiny):
    # PyTorch's conv arithmetic: each stride-2 stage gives ceil(size / 2); logits at input size.
    x = jax.random.normal(jax.random.key(0), (1, 45, 70, 3))
    logits, feats = apply(nnx.clone(tiny), x, train=False)
    assert feats["layer1"].shape[1:3] == (12, 18)
    assert feats["layer4"].shape[1:3] == (3, 5)
    assert logits.shape == (1, 45, 70, 5) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
    "output_stride, layer3, layer4",
    [
        (16, (1, 1, 1, 1, 1, 1), (2, 4, 8)),
        (8, (2, 2, 2, 2, 2, 2), (4, 8, 16)),
    ],
)
def test_dilations_and_padding(output_stride, layer3, layer4):
    net = nnx.eval_shape(lambda: ResNet(50, output_stride=output_stride, width=8, rngs=nnx.Rngs(0)))
    for layer, expected in (("layer3", layer3), ("layer4", layer4)):
        convs = [getattr(getattr(net, layer), f"block{i}").conv2 for i in range(len(expected))]
        assert tuple(c.kernel_dilation for c in convs) == expected
        # Symmetric padding = dilation (PyTorch), never "SAME".
        assert [c.padding for c in convs] == [((d, d), (d, d)) for d in expected]
    assert net.conv1.padding == ((1, 1), (1, 1)) and net.conv1.strides == 2


def test_resnet18_multi_grid_uses_first_two_units():
    net = nnx.eval_shape(lambda: ResNet(18, output_stride=16, width=8, rngs=nnx.Rngs(0)))
    layer4 = net.layer4
    assert (layer4.block0.conv1.kernel_dilation, layer4.block1.conv2.kernel_dilation) == (2, 4)
    with pytest.raises(ValueError, match="multi_grid"):
        ResNet(50, multi_grid=(1, 2), width=8, rngs=nnx.Rngs(0))


def test_bfloat16_compute_float32_params_and_logits():
    model, logits = abstract_forward(lambda: tiny_model(dtype=jnp.bfloat16), (1, 32, 32, 3))
    assert logits.dtype == jnp.float32
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model))} == {jnp.dtype(jnp.float32)}
    _, feats = abstract_forward(
        lambda: ResNet(18, width=8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)), (1, 32, 32, 3)
    )
    assert feats["layer4"].dtype == jnp.bfloat16


def test_state_tree_has_only_string_keys():
    model = nnx.eval_shape(lambda: tiny_model(backbone_depth=50))
    paths = [path for path, _ in nnx.to_flat_state(nnx.state(model))]
    assert paths and all(isinstance(k, str) for p in paths for k in p)
    assert ("backbone", "layer3", "block5", "conv2", "kernel") in paths
    assert ("aspp", "pool_red_conv", "kernel") in paths


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("depth, expected", [(50, 23_508_032), (101, 42_500_160)])
def test_torchvision_param_counts(depth, expected):
    # torchvision resnet50 / resnet101 have 25,557,032 / 44,549,160 parameters; minus the fc
    # layer (2048 * 1000 + 1000) that leaves the conv weights + BN scale/bias counted here.
    net = nnx.eval_shape(lambda: ResNet(depth, stem="torchvision", rngs=nnx.Rngs(0)))
    assert num_params(net) == expected


def test_deep_stem_param_count():
    net = nnx.eval_shape(lambda: ResNet(50, stem="deep", rngs=nnx.Rngs(0)))
    # v1c differs from torchvision only in the stem and in layer1.block0's input width (128):
    torchvision_stem = 7 * 7 * 3 * 64 + 2 * 64  # conv1 + bn1
    deep_stem = (
        (3 * 3 * 3 * 64 + 2 * 64) + (3 * 3 * 64 * 64 + 2 * 64) + (3 * 3 * 64 * 128 + 2 * 128)
    )
    wider_input = (128 - 64) * 64 + (128 - 64) * 256  # block0.conv1 and block0.downsample_conv
    expected = 23_508_032 - torchvision_stem + deep_stem + wider_input
    assert expected == 23_631_808
    assert num_params(net) == expected


def test_deeplab_head_param_count():
    model = nnx.eval_shape(lambda: DeepLabV3Plus(21, backbone_depth=50, rngs=nnx.Rngs(0)))
    aspp = 2048 * 256 + 3 * 9 * 2048 * 256 + 2 * 1024 + 1024 * 256  # map convs, map_bn, red_conv
    aspp += 2048 * 256 + 2 * 256 + 256 * 256 + 2 * 256  # pooling conv + bn, pool_red_conv, red_bn
    decoder = 256 * 48 + 2 * 48 + 9 * 304 * 256 + 2 * 256 + 9 * 256 * 256 + 2 * 256
    classifier = 256 * 21 + 21
    assert num_params(model) - num_params(model.backbone) == aspp + decoder + classifier


# ---------------------------------------------------------------- align_corners resize


def resize_reference(x, out_h, out_w):
    """Loop form of PyTorch's bilinear interpolation with align_corners=True."""
    n, in_h, in_w, c = x.shape
    out = np.zeros((n, out_h, out_w, c), np.float64)
    sy = (in_h - 1) / (out_h - 1) if out_h > 1 else 0.0
    sx = (in_w - 1) / (out_w - 1) if out_w > 1 else 0.0
    for i in range(out_h):
        y = i * sy
        y0 = min(int(np.floor(y)), in_h - 1)
        y1, wy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            xx = j * sx
            x0 = min(int(np.floor(xx)), in_w - 1)
            x1, wx = min(x0 + 1, in_w - 1), xx - x0
            out[:, i, j] = (1 - wy) * ((1 - wx) * x[:, y0, x0] + wx * x[:, y0, x1]) + wy * (
                (1 - wx) * x[:, y1, x0] + wx * x[:, y1, x1]
            )
    return out


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [
        ((5, 7), (9, 13)),  # up
        ((9, 13), (4, 6)),  # down
        ((4, 6), (16, 24)),  # x4 up, as decoder and logits
        ((5, 7), (1, 3)),  # output height 1
        ((5, 7), (1, 1)),
        ((1, 1), (3, 4)),  # input size 1
        ((1, 5), (2, 1)),
        ((6, 6), (6, 6)),  # identity
    ],
)
def test_resize_align_corners(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3))
    got = resize_bilinear_align_corners(jnp.asarray(x, jnp.float32), out_hw)
    assert got.shape == (2, *out_hw, 3)
    np.testing.assert_allclose(np.asarray(got), resize_reference(x, *out_hw), rtol=1e-5, atol=1e-5)


def test_interpolation_matrix_rows_sum_to_one_and_hit_corners():
    m = interpolation_matrix(7, 25)
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert m[0, 0] == 1.0 and m[-1, -1] == 1.0  # align_corners: the corner pixels map exactly


# ---------------------------------------------------------------- BatchNorm and determinism


def test_train_updates_batch_stats_eval_does_not(tiny):
    model = nnx.clone(tiny)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3)) * 2 + 1
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))

    y1, _ = apply(model, x, train=False)
    y2, _ = apply(model, x, train=False)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    after_eval = nnx.state(model, nnx.BatchStat)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, after_eval))

    apply(model, x, train=True)
    stem_mean = np.asarray(model.backbone.bn1.mean[...])
    assert not np.allclose(stem_mean, before["backbone"]["bn1"]["mean"][...])
    # Every BN saw a batch: all running means moved away from their initial zeros.
    stats = nnx.to_flat_state(nnx.state(model, nnx.BatchStat))
    moved = [np.any(np.asarray(m) != 0) for p, m in stats if p[-1] == "mean"]
    assert all(moved)
    # And the output now differs from the one with the initial statistics.
    assert not np.allclose(np.asarray(apply(model, x, train=False)[0]), np.asarray(y1))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_matches_flax(dtype):
    # Our BatchNorm only changes how the running averages are written (see its docstring).
    kw = dict(momentum=0.9, epsilon=1e-5, use_fast_variance=False, dtype=dtype)
    ours, ref = BatchNorm(6, **kw, rngs=nnx.Rngs(0)), nnx.BatchNorm(6, **kw, rngs=nnx.Rngs(0))
    for bn in (ours, ref):
        bn.scale[...] = jnp.arange(1.0, 7.0)
        bn.bias[...] = jnp.arange(6.0)
    x = (jax.random.normal(jax.random.key(0), (4, 5, 5, 6)) * 3 + 2).astype(dtype)
    tol = 1e-5 if dtype == jnp.float32 else 5e-2
    for train in (True, True, False):
        y, y_ref = ours(x, use_running_average=not train), ref(x, use_running_average=not train)
        assert y.dtype == y_ref.dtype == dtype
        np.testing.assert_allclose(
            np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=tol, atol=tol
        )
        for name in ("mean", "var"):
            np.testing.assert_allclose(
                np.asarray(getattr(ours, name)[...]),
                np.asarray(getattr(ref, name)[...]),
                rtol=1e-5,
                atol=1e-6,
            )


@pytest.mark.parametrize("running_var", ["biased", "unbiased"])
@pytest.mark.parametrize("shape", [(2, 1, 1, 3), (2, 3, 5, 3)], ids=["n=2", "n=30"])
def test_batch_norm_running_var_by_hand(running_var, shape):
    # n = N*H*W values per channel; (2, 1, 1, C) is what the ASPP image-pooling BN sees.
    x = np.random.default_rng(0).normal(size=shape) * 2 + 1
    bn = BatchNorm(
        3,
        running_var=running_var,
        momentum=0.9,
        epsilon=1e-5,
        use_fast_variance=False,
        rngs=nnx.Rngs(0),
    )
    mean0, var0 = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 0.5])
    scale, bias = np.array([1.0, 2.0, 0.5]), np.array([0.0, 0.3, -0.2])
    bn.mean[...], bn.var[...] = jnp.asarray(mean0, jnp.float32), jnp.asarray(var0, jnp.float32)
    bn.scale[...], bn.bias[...] = jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32)

    y = bn(jnp.asarray(x, jnp.float32), use_running_average=False)

    values = x.reshape(-1, 3)
    n = values.shape[0]
    batch_mean = values.mean(0)
    biased = ((values - batch_mean) ** 2).mean(0)
    taken_in = biased * n / (n - 1) if running_var == "unbiased" else biased  # x2 at n = 2
    np.testing.assert_allclose(bn.mean[...], 0.9 * mean0 + 0.1 * batch_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], 0.9 * var0 + 0.1 * taken_in, rtol=1e-6, atol=1e-6)
    # Normalisation in train mode uses the biased variance in both modes (as PyTorch).
    want = (x - batch_mean) / np.sqrt(biased + 1e-5) * scale + bias
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5)


def test_batch_norm_rejects_unknown_running_var():
    with pytest.raises(ValueError, match="running_var must be one of .*'sample'"):
        BatchNorm(3, running_var="sample", rngs=nnx.Rngs(0))


def batch_norms(model):
    return {
        "/".join(map(str, path)): m
        for path, m in nnx.iter_modules(model)
        if isinstance(m, BatchNorm)
    }


def test_bn_running_var_reaches_every_batch_norm():
    for mode in ("biased", "unbiased"):
        model = nnx.eval_shape(
            lambda mode=mode: build_model(model_config(bn_running_var=mode), 5, nnx.Rngs(0))
        )
        bns = batch_norms(model)
        assert {"aspp/global_pooling_bn", "backbone/bn1", "last_bn2"} <= set(bns)
        # stem 3, 8 blocks x 2, 4 downsamples, ASPP 3, decoder 3
        assert len(bns) == 3 + 2 * 8 + 4 + 3 + 3 and {m.running_var for m in bns.values()} == {mode}
    # A config without the field (an older run's) gets flax's biased variance.
    config = model_config()
    del config["bn_running_var"]
    model = nnx.eval_shape(lambda: build_model(config, 5, nnx.Rngs(0)))
    assert {m.running_var for m in batch_norms(model).values()} == {"biased"}


@partial(jax.jit, static_argnums=0)
def _train_forward(graphdef, state, x):
    model = nnx.merge(graphdef, state)
    return model(x, train=True), nnx.state(model)


def train_forward(model, x):
    """Logits of ONE train-mode forward (``apply`` also runs the backbone a second time)."""
    graphdef, state = nnx.split(model)
    logits, state = _train_forward(graphdef, state, x)
    nnx.update(model, state)
    return logits


def test_unbiased_running_var_in_the_net(tiny):
    """One train-mode forward of a batch of 2 at 32x32: every BN's running variance takes in
    n / (n - 1) times flax's batch variance, 2 at the image-pooling BN; the logits are the same."""
    biased, unbiased = nnx.clone(tiny), nnx.clone(tiny)
    for bn in batch_norms(unbiased).values():
        bn.running_var = "unbiased"
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    y_b, y_u = (train_forward(model, x) for model in (biased, unbiased))
    np.testing.assert_array_equal(np.asarray(y_b), np.asarray(y_u))
    # Values per channel: batch 2 x the BN's feature map (stem 16x16, layer4 / ASPP 2x2).
    n = {"aspp/global_pooling_bn": 2, "aspp/map_bn": 8, "backbone/bn1": 512, "last_bn1": 128}
    bns_b, bns_u = batch_norms(biased), batch_norms(unbiased)
    for name, count in n.items():
        taken_in_b = (np.asarray(bns_b[name].var[...]) - 0.9) / 0.1  # the initial variance is 1
        taken_in_u = (np.asarray(bns_u[name].var[...]) - 0.9) / 0.1
        np.testing.assert_allclose(taken_in_u, taken_in_b * count / (count - 1), rtol=1e-4)
        np.testing.assert_array_equal(bns_b[name].mean[...], bns_u[name].mean[...])


def test_gradients_reach_every_parameter(tiny):
    graphdef, params, rest = nnx.split(tiny, nnx.Param, ...)

    @jax.jit
    def grads(params, rest, x):
        def loss(params):
            # copy=True: without it the BatchStat Variables belong to the jit trace and the
            # train-mode update inside jax.grad raises TraceContextError (stock nnx too).
            model = nnx.merge(graphdef, params, rest, copy=True)
            logits = model(x, train=True)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), nnx.state(model, nnx.BatchStat)

        return jax.grad(loss, has_aux=True)(params)

    g, new_rest = grads(params, rest, jax.random.normal(jax.random.key(2), (2, 32, 32, 3)))
    assert not np.allclose(np.asarray(new_rest["aspp"]["red_bn"]["mean"][...]), 0)
    for path, v in nnx.to_flat_state(g):
        v = np.asarray(v)
        assert np.isfinite(v).all() and np.any(v != 0), path


# ---------------------------------------------------------------- initialisation


def params_of(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_same_seed_same_params_different_seed_different():
    a, b, c = tiny_model(seed=0), tiny_model(seed=0), tiny_model(seed=1)
    for pa, pb in zip(params_of(a), params_of(b)):
        np.testing.assert_array_equal(pa, pb)
    kernels_a = [
        np.asarray(v) for p, v in nnx.to_flat_state(nnx.state(a, nnx.Param)) if p[-1] == "kernel"
    ]
    kernels_c = [
        np.asarray(v) for p, v in nnx.to_flat_state(nnx.state(c, nnx.Param)) if p[-1] == "kernel"
    ]
    assert all(not np.array_equal(ka, kc) for ka, kc in zip(kernels_a, kernels_c))


def test_init_kaiming_and_bn(tiny):
    model = tiny
    kernel = np.asarray(model.backbone.layer4.block1.conv2.kernel[...])  # 3x3x64x64
    fan_in = 3 * 3 * 64
    assert abs(kernel.std() / math.sqrt(2.0 / fan_in) - 1) < 0.05
    assert abs(kernel.mean()) < 0.01
    bn = model.aspp.map_bn
    np.testing.assert_array_equal(np.asarray(bn.scale[...]), 1.0)
    np.testing.assert_array_equal(np.asarray(bn.bias[...]), 0.0)
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5
    np.testing.assert_array_equal(np.asarray(model.classifier.bias[...]), 0.0)
    assert model.backbone.conv1.bias is None and model.last_conv1.bias is None


def test_classifier_bias_init_torch(tiny):
    """PyTorch's default Conv2d bias: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the
    decoder's 16 channels; from the seed, and no other parameter changes."""
    torch_init = [tiny_model(seed, classifier_bias_init="torch") for seed in (0, 0, 1)]
    bias = [np.asarray(m.classifier.bias[...]) for m in torch_init]
    assert bias[0].shape == (5,) and np.all(np.abs(bias[0]) <= 1 / math.sqrt(16))
    assert np.any(bias[0] != 0) and len(set(bias[0].tolist())) == 5
    np.testing.assert_array_equal(bias[0], bias[1])
    assert not np.array_equal(bias[0], bias[2])
    ours = nnx.to_flat_state(nnx.state(torch_init[0], nnx.Param))
    zeros = dict(nnx.to_flat_state(nnx.state(tiny, nnx.Param)))
    for path, value in ours:
        if path != ("classifier", "bias"):
            np.testing.assert_array_equal(np.asarray(value), np.asarray(zeros[path]), str(path))
    np.testing.assert_array_equal(np.asarray(zeros["classifier", "bias"]), 0.0)


# ---------------------------------------------------------------- build_model


def model_config(**overrides):
    fields = dict(
        backbone="resnet18",
        stem="deep",
        output_stride=16,
        width=8,
        aspp_channels=16,
        low_level_channels=8,
        decoder_channels=16,
        dtype="float32",
        bn_running_var="biased",
        classifier_bias_init="zeros",
    )
    return ml_collections.ConfigDict({**fields, **overrides})


def test_build_model_from_config():
    config = model_config(
        backbone="resnet50", stem="torchvision", output_stride=8, dtype="bfloat16"
    )
    model = nnx.eval_shape(lambda: build_model(config, 7, nnx.Rngs(0)))
    assert model.backbone.depth == 50 and model.backbone.stem_type == "torchvision"
    assert model.backbone.output_stride == 8 and model.dtype == jnp.bfloat16
    assert model.aspp.map_conv1.kernel_dilation == 12  # rates (12, 24, 36) at output stride 8
    assert model.classifier.out_features == 7


@pytest.mark.parametrize(
    "field, value",
    [
        ("backbone", "resnet152"),
        ("backbone", "vgg16"),
        ("stem", "v1c"),
        ("output_stride", 4),
        ("dtype", "float16"),
        ("width", 0),
        ("aspp_channels", 16.0),
        ("bn_running_var", "pytorch"),
        ("classifier_bias_init", "uniform"),
    ],
)
def test_build_model_rejects_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"model\\.{field}") as e:
        build_model(model_config(**{field: value}), 5, nnx.Rngs(0))
    assert repr(value) in str(e.value)


def test_build_model_bad_backbone_lists_allowed_names():
    with pytest.raises(ValueError, match="model.backbone") as e:
        build_model(model_config(backbone="resnet-50"), 5, nnx.Rngs(0))
    for name in ("resnet18", "resnet34", "resnet50", "resnet101"):
        assert name in str(e.value)


def test_float64_model_needs_x64_and_is_float64_throughout():
    with pytest.raises(ValueError, match="model.dtype='float64' needs jax_enable_x64"):
        build_model(model_config(dtype="float64"), 5, nnx.Rngs(0))
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        model = nnx.eval_shape(lambda: build_model(model_config(dtype="float64"), 5, nnx.Rngs(0)))
        _, out = abstract_forward(lambda: model, (1, 32, 32, 3))
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param)) + jax.tree.leaves(
            nnx.state(model, nnx.BatchStat)
        )
    finally:
        jax.config.update("jax_enable_x64", before)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float64)}
    assert out.dtype == jnp.float64
