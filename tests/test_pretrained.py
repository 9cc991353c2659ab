"""Pretrained backbones: PyTorch name mapping, .npz / .pth loading, parity with PyTorch ResNets.

Tests that need PyTorch skip without it (`pip install -e ".[test,torch]"` runs them).
"""

import json

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx, traverse_util

from configs import demo
from cps_jax import export
from cps_jax.models import ResNet
from cps_jax.models import pretrained as P
from cps_jax import optim
from cps_jax.models.functional import init_net
from cps_jax.state import create_train_state

NUM_CLASSES = 5


def rand(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def bn(rng, prefix, c):
    return {
        f"{prefix}.{t}": rand(rng, c) for t in ("weight", "bias", "running_mean", "running_var")
    } | {f"{prefix}.num_batches_tracked": np.array(3)}


def bn_keys(path):
    return {f"{path}/{t}" for t in ("scale", "bias", "mean", "var")}


# ---------------------------------------------------------------- name mapping (no torch)


def test_torchvision_names_and_oihw_to_hwio():
    rng = np.random.default_rng(0)
    sd = {"conv1.weight": rand(rng, 4, 3, 7, 7), **bn(rng, "bn1", 4)}
    sd |= {"layer1.0.conv1.weight": rand(rng, 2, 4, 1, 1), **bn(rng, "layer1.0.bn1", 2)}
    sd |= {"layer2.1.conv3.weight": rand(rng, 8, 2, 1, 1), **bn(rng, "layer2.1.bn3", 8)}
    sd |= {"layer4.0.downsample.0.weight": rand(rng, 8, 4, 1, 1)}
    sd |= bn(rng, "layer4.0.downsample.1", 8)
    sd |= {"fc.weight": rand(rng, 10, 8), "fc.bias": rand(rng, 10)}
    out, ignored = P.convert_state_dict(sd)
    assert set(out) == (
        {"backbone/conv1/kernel", "backbone/layer1/block0/conv1/kernel"}
        | {"backbone/layer2/block1/conv3/kernel", "backbone/layer4/block0/downsample_conv/kernel"}
        | bn_keys("backbone/bn1")
        | bn_keys("backbone/layer1/block0/bn1")
        | bn_keys("backbone/layer2/block1/bn3")
        | bn_keys("backbone/layer4/block0/downsample_bn")
    )
    assert set(ignored) == {"fc.weight", "fc.bias"} | {k for k in sd if "num_batches" in k}
    w, k = sd["conv1.weight"], out["backbone/conv1/kernel"]
    assert k.shape == (7, 7, 3, 4) and k.dtype == np.float32
    for o, i, h, x in [(0, 0, 0, 0), (3, 2, 6, 1), (1, 2, 4, 5), (2, 1, 3, 6)]:
        assert k[h, x, i, o] == w[o, i, h, x]
    assert np.array_equal(out["backbone/bn1/scale"], sd["bn1.weight"])
    assert np.array_equal(out["backbone/bn1/bias"], sd["bn1.bias"])
    assert np.array_equal(out["backbone/layer2/block1/bn3/mean"], sd["layer2.1.bn3.running_mean"])
    assert np.array_equal(out["backbone/layer2/block1/bn3/var"], sd["layer2.1.bn3.running_var"])


V1C_STEM = {  # reference (TorchSemiSeg) name, mmcv name -> cps_jax module
    ("conv1.0", "stem.0"): "conv1",
    ("conv1.1", "stem.1"): "bn1",
    ("conv1.3", "stem.3"): "conv2",
    ("conv1.4", "stem.4"): "bn2",
    ("conv1.6", "stem.6"): "conv3",
    ("bn1", "stem.7"): "bn3",
}


@pytest.mark.parametrize("naming", [0, 1], ids=["reference", "mmcv"])
@pytest.mark.parametrize("layout", ["auto", "v1c"])
def test_v1c_stem_names(naming, layout):
    rng = np.random.default_rng(1)
    sd, expected = {}, {}
    for names, target in V1C_STEM.items():
        name = names[naming]
        if target.startswith("conv"):
            sd[f"{name}.weight"] = rand(rng, 4, 3, 3, 3)
            expected[f"{name}.weight"] = f"backbone/{target}/kernel"
        else:
            sd |= bn(rng, name, 4)
            expected[f"{name}.running_var"] = f"backbone/{target}/var"
            expected[f"{name}.weight"] = f"backbone/{target}/scale"
    out, _ = P.convert_state_dict(sd, layout)
    assert len(out) == 3 + 3 * 4
    for src, dst in expected.items():
        want = sd[src].transpose(2, 3, 1, 0) if dst.endswith("kernel") else sd[src]
        np.testing.assert_array_equal(out[dst], want)


def test_wrappers_and_prefixes():
    rng = np.random.default_rng(2)
    plain = {"conv1.weight": rand(rng, 4, 3, 7, 7), **bn(rng, "bn1", 4)}
    want, _ = P.convert_state_dict(plain)
    head = {"module.decoder.conv.weight": rand(rng, 2, 2, 1, 1)}
    for wrapped in (
        {"state_dict": {f"module.{k}": v for k, v in plain.items()}},
        {"model": {f"backbone.{k}": v for k, v in plain.items()}, "epoch": 3},
        {"state_dict": {f"module.backbone.{k}": v for k, v in plain.items()} | head},
    ):
        out, ignored = P.convert_state_dict(wrapped)
        assert out.keys() == want.keys()
        assert all(np.array_equal(out[k], want[k]) for k in want)
    assert "decoder.conv.weight" in ignored  # the head of a full model is left out
    with pytest.raises(ValueError, match="'state_dict' or 'model'.*epoch"):
        P.convert_state_dict({"epoch": 3, "optimizer": {}}, source="ckpt.pth")


def test_unknown_tensors_are_all_named():
    rng = np.random.default_rng(3)
    sd = {"conv1.weight": rand(rng, 4, 3, 7, 7), **bn(rng, "bn1", 4)}
    sd |= {
        "layer1.0.se.fc1.weight": rand(rng, 2, 4),
        "layer5.0.conv1.weight": rand(rng, 2, 2, 1, 1),
    }
    with pytest.raises(ValueError) as error:
        P.convert_state_dict(sd, source="x.pth")
    message = str(error.value)
    assert "x.pth: 2 tensor(s)" in message
    assert "layer1.0.se.fc1.weight (2, 4)" in message and "layer5.0.conv1.weight" in message
    # A v1c checkpoint read as torchvision: its deep-stem tensors are named.
    sd = {"conv1.0.weight": rand(rng, 4, 3, 3, 3), **bn(rng, "conv1.1", 4)}
    with pytest.raises(ValueError, match=r"torchvision-layout(.|\n)*conv1\.0\.weight"):
        P.convert_state_dict(sd, "torchvision")


# ---------------------------------------------------------------- model.pretrained (no torch)


@pytest.fixture(scope="module")
def config():
    return demo.get_config("runlocal")


def backbone_arrays(config, seed):
    """Flat backbone weights of a runlocal net, as the converter writes them."""
    _, params, stats = init_net(config.model, NUM_CLASSES, seed)
    flat = {}
    for tree in (params, stats):
        flat |= traverse_util.flatten_dict({"backbone": tree["backbone"]}, sep="/")
    return {k: np.asarray(v) for k, v in flat.items()}


def make_state(config, path=""):
    config = config.copy_and_resolve_references()
    config.model.pretrained = str(path)
    tx, _ = optim.make(config.optim, 10)
    return jax.jit(lambda r: create_train_state(config.model, NUM_CLASSES, tx, r))(
        jax.random.key_data(jax.random.key(0))
    )


def flat_backbone(net):
    return {
        **traverse_util.flatten_dict(net["params"]["backbone"], sep="/"),
        **traverse_util.flatten_dict(net["batch_stats"]["backbone"], sep="/"),
    }


def test_pretrained_backbone_in_both_nets_heads_differ(config, tmp_path):
    weights = backbone_arrays(config, seed=123)
    path = tmp_path / "r18.npz"
    np.savez(path, **weights)
    state = make_state(config, path)
    for net in state.nets.values():
        got = flat_backbone(net)
        assert {f"backbone/{k}" for k in got} == set(weights)
        for k, v in got.items():
            np.testing.assert_array_equal(v, weights[f"backbone/{k}"], err_msg=k)
    for name in ("aspp", "reduce_conv", "last_conv1", "classifier"):
        left = jax.tree.leaves(state.nets["left"]["params"][name])
        right = jax.tree.leaves(state.nets["right"]["params"][name])
        assert not any(np.array_equal(a, b) for a, b in zip(left, right) if a.ndim == 4), name
    # Without model.pretrained the backbones are random and differ from each other.
    fresh = make_state(config)
    a, b = flat_backbone(fresh.nets["left"]), flat_backbone(fresh.nets["right"])
    assert not np.array_equal(a["conv1/kernel"], b["conv1/kernel"])
    assert not np.array_equal(a["conv1/kernel"], weights["backbone/conv1/kernel"])


def test_pretrained_from_a_cps_jax_export_takes_its_left_backbone(config, tmp_path):
    """A backbone cps_jax trained itself (e.g. on a source domain) starts both nets of a new run."""
    _, left_params, left_stats = init_net(config.model, NUM_CLASSES, 7)
    _, right_params, right_stats = init_net(config.model, NUM_CLASSES, 8)
    nets = {
        "left": {"params": left_params, "batch_stats": left_stats},
        "right": {"params": right_params, "batch_stats": right_stats},
    }
    names, colours = tuple(f"c{i}" for i in range(NUM_CLASSES)), np.zeros((NUM_CLASSES, 3))
    path = str(tmp_path / "source.cpsj")
    export.save(export.Model(config, nets, names, colours, step=3), path)
    state = make_state(config, path)
    expected = backbone_arrays(config, seed=7)
    for net in state.nets.values():
        got = flat_backbone(net)
        assert {f"backbone/{k}" for k in got} == set(expected)
        for k, v in got.items():
            np.testing.assert_array_equal(v, expected[f"backbone/{k}"], err_msg=k)
    export.save(export.Model(config, {"right": nets["right"]}, names, colours), path)
    with pytest.raises(ValueError, match=r"model.pretrained: .*source\.cpsj: has no left net"):
        make_state(config, path)
    junk = tmp_path / "junk.cpsj"
    junk.write_bytes(b"\x00\x01 not msgpack")
    with pytest.raises(ValueError, match=r"^model.pretrained: \S*junk\.cpsj: not a cps_jax model"):
        make_state(config, junk)


def test_pretrained_mismatch_names_every_key_and_the_file(config, tmp_path):
    weights = backbone_arrays(config, seed=1)
    del weights["backbone/layer2/block1/conv2/kernel"], weights["backbone/bn3/var"]
    weights["backbone/layer3/block0/bn1/scale"] = np.ones(3, np.float32)
    weights["backbone/fc/kernel"] = np.ones((4, 4), np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **weights)
    with pytest.raises(ValueError) as error:
        make_state(config, path)
    message = str(error.value)
    assert f"model.pretrained={path}" in message
    missing, rest = message.split("missing (2):")[1].split("extra (1):")
    extra, misshaped = rest.split("mis-shaped (1):")
    assert "backbone/layer2/block1/conv2/kernel (3, 3, 16, 16)" in missing
    assert "backbone/bn3/var (16,)" in missing
    assert "backbone/fc/kernel (4, 4)" in extra
    assert "backbone/layer3/block0/bn1/scale: file (3,), model (32,)" in misshaped


def test_pretrained_other_architecture_is_described(config, tmp_path):
    path = tmp_path / "r34.npz"
    shapes = P.expected_shapes(34, "torchvision", 8)
    np.savez(path, **{k: np.zeros(s, np.float32) for k, s in shapes.items()})
    with pytest.raises(
        ValueError,
        match="file: ResNet-34, torchvision stem, width 8; model: ResNet-18, deep stem, width 8",
    ):
        make_state(config, path)
    with pytest.raises(FileNotFoundError, match="model.pretrained: no such weight file: .*nope"):
        make_state(config, tmp_path / "nope.npz")


# ---------------------------------------------------------------- parity with PyTorch


@pytest.fixture(scope="module")
def tnets():
    pytest.importorskip("torch")
    import torch_resnets

    return torch_resnets


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "depth,stem,output_stride,size,width",
    [
        (50, "torchvision", 32, 64, 64),
        (50, "v1c", 32, 64, 64),
        (50, "v1c", 16, 128, 64),
        (50, "torchvision", 8, 96, 64),
        (18, "v1c-mmcv", 16, 64, 16),
    ],
)
@pytest.mark.slow
def test_features_match_pytorch(tnets, depth, stem, output_stride, size, width):
    import torch

    net = tnets.randomize_(tnets.ResNet(depth, stem=stem, width=width), seed=depth + size)
    tnets.dilate_(net, output_stride)
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = {
            k: v.numpy().transpose(0, 2, 3, 1) for k, v in net.features(torch.tensor(x)).items()
        }
    state_dict = {k: v.numpy() for k, v in net.state_dict().items()}
    weights, _ = P.convert_state_dict(state_dict)

    jstem = "torchvision" if stem == "torchvision" else "deep"
    model = nnx.eval_shape(
        lambda: ResNet(
            depth, stem=jstem, output_stride=output_stride, width=width, rngs=nnx.Rngs(0)
        )
    )
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    params, stats = P.replace_backbone(
        {"backbone": nnx.to_pure_dict(params)}, {"backbone": nnx.to_pure_dict(stats)}, weights, stem
    )
    forward = jax.jit(lambda p, s, x: nnx.merge(graphdef, p, s)(x, train=False))
    got = forward(params["backbone"], stats["backbone"], x.transpose(0, 2, 3, 1))
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        assert relative_error(np.asarray(got[name]), ref) <= 1e-4, name


def test_pth_through_the_cli_and_model_pretrained(tnets, config, tmp_path, capsys):
    import torch

    net = tnets.randomize_(tnets.ResNet(18, stem="v1c", width=config.model.width), seed=5)
    plain = {k: v.numpy() for k, v in net.state_dict().items()}
    pth, npz = tmp_path / "r18.pth", tmp_path / "r18.npz"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, pth)

    P.main(["--input", str(pth), "--output", str(npz)])
    assert "ResNet-18, deep stem, width 8" in capsys.readouterr().out
    want, _ = P.convert_state_dict(plain)
    for loaded in (P.load_weights(str(npz)), P.load_weights(str(pth))):
        assert loaded.keys() == want.keys()
        assert all(np.array_equal(loaded[k], want[k]) for k in want)

    state = make_state(config, pth)  # a .pth directly, converted on load
    got = flat_backbone(state.nets["right"])
    assert all(np.array_equal(got[k.removeprefix("backbone/")], v) for k, v in want.items())

    # A checkpoint with a tensor missing fails conversion, naming it.
    del plain["layer3.1.bn2.running_var"]
    torch.save({k: torch.tensor(v) for k, v in plain.items()}, pth)
    with pytest.raises(SystemExit, match=r"missing \(1\):\s+backbone/layer3/block1/bn2/var"):
        P.main(["--input", str(pth), "--output", str(npz)])
    with pytest.raises(
        SystemExit, match=r"not part of a torchvision-layout(.|\n)*conv1\.0\.weight"
    ):
        P.main(["--input", str(pth), "--output", str(npz), "--layout", "torchvision"])


def test_checkpoint_shapes_do_not_read_the_pretrained_file(config, tmp_path):
    """cps-eval restores a checkpoint of a run that was started from pretrained weights; the
    weight file may be gone by then, and its shapes are the net's own."""
    from cps_jax import restore

    gone = config.copy_and_resolve_references()
    gone.model.pretrained = str(tmp_path / "moved_away.npz")
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    want = restore.abstract_nets(config, NUM_CLASSES, sharding)
    got = restore.abstract_nets(gone, NUM_CLASSES, sharding)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, got, want))
    assert gone.model.pretrained.endswith("moved_away.npz")  # the caller's config is untouched
    # A fine-tuned run (model.pretrained_heads) whose file is gone, and a run saved before the
    # field existed, restore alike.
    gone.model.pretrained, gone.model.pretrained_heads = str(tmp_path / "moved_away.cpsj"), True
    got = restore.abstract_nets(gone, NUM_CLASSES, sharding)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    older = ml_collections.ConfigDict(json.loads(config.to_json()))
    del older.model["pretrained_heads"]
    got = restore.abstract_nets(older, NUM_CLASSES, sharding)
    assert jax.tree.structure(got) == jax.tree.structure(want)


def test_pretrained_heads_start_every_net_as_the_exported_net_whole(config, tmp_path):
    """model.pretrained_heads: each net starts as the export's left net, heads and BN statistics
    included (fine-tuning a trained model); a net of another shape, or a file that is no export,
    is refused naming the field."""
    _, params, stats = init_net(config.model, NUM_CLASSES, 7)
    names, colours = tuple(f"c{i}" for i in range(NUM_CLASSES)), np.zeros((NUM_CLASSES, 3))
    path = str(tmp_path / "teacher.cpsj")
    export.save(export.Model(config, {"left": {"params": params, "batch_stats": stats}}, names, colours), path)
    whole = config.copy_and_resolve_references()
    whole.model.pretrained_heads = True
    state = make_state(whole, path)
    expected = jax.tree.leaves({"params": params, "batch_stats": stats})
    for net in state.nets.values():
        got = jax.tree.leaves({"params": net["params"], "batch_stats": net["batch_stats"]})
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, other, other_stats = init_net(config.model, NUM_CLASSES + 1, 7)
    export.save(export.Model(config, {"left": {"params": other, "batch_stats": other_stats}}, names + ("x",), np.zeros((NUM_CLASSES + 1, 3))), path)
    with pytest.raises(ValueError, match=r"model.pretrained .*teacher\.cpsj with model.pretrained_heads: .*classifier"):
        make_state(whole, path)
    np.savez(tmp_path / "b.npz", **backbone_arrays(config, 1))
    with pytest.raises(ValueError, match=r"model.pretrained_heads needs a cps-export file"):
        make_state(whole, tmp_path / "b.npz")
