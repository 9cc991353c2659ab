"""Parity of the whole cps_jax DeepLabv3+ and CPS step with an independent PyTorch one.

tests/torch_deeplab.py builds the reference's network in PyTorch (its module names); the cps_jax
parameters and BN statistics are copied into it by name, then both sides compute, in float64
(tolerance 1e-9) and in float32 (1e-4):
  - logits in eval mode and in train mode (a ResNet-50 net);
  - the BN running statistics after a train-mode forward (bn_running_var="unbiased": PyTorch's
    momentum-0.1 update of the mean and the unbiased variance);
  - two CPS steps without CutMix (a ResNet-18 pair; cps_jax.train_step.make_train_step with
    cps_jax.optim.make against the reference's loss and SGD: momentum, weight decay
    on conv weights only, poly lr), labels with ignored (255) pixels: per step the loss, the
    gradients of every parameter of both nets and the optimizer's updates (recorded by optax
    stages around cps_jax's optimizer), the parameters and BN statistics after it. Each step
    starts both sides from cps_jax's state (momentum buffers included).
Errors are relative, |got - want| / |want| in 2-norms per array. cps_jax/losses.py keeps float64
logits in float64, so the float64 loss and gradients are held to 1e-9 too.
Needs PyTorch; skips without it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, traverse_util

from configs import demo
from cps_jax.models import build_model
from cps_jax.models import pretrained as P
from cps_jax import optim
from cps_jax.models.functional import apply_net
from cps_jax.state import TrainState
from cps_jax.train_step import make_train_step

torch = pytest.importorskip("torch")

import torch_deeplab  # noqa: E402  (imports torch)

NUM_CLASSES = 5
# Narrow nets at output stride 16: ResNet-50 (bottleneck blocks, the reference's) for the forward
# checks, ResNet-18 (the demo's) for the training steps. Small ASPP rates, so that the dilated
# taps reach into the 3x3 feature map (6, 12, 18 would see its centre only).
HEAD = dict(width=8, aspp_channels=16, low_level_channels=8, decoder_channels=16)
ASPP_RATES = (1, 2, 3)
N, H, W = 2, 33, 41  # odd, non-square: 17x21 after the stem, 3x3 at layer4
N_L, N_U = 2, 3  # labeled and unlabeled images of a training step
TOL = {"float64": 1e-9, "float32": 1e-4}
# One CPS step's gradients and updates in float32: the two libraries' float32 kernels sum in
# different orders, and train-mode BN over a small batch amplifies that; on an AMD EPYC CPU the
# worst gradient (a BN scale) is 5.7e-3 off (2-norm, relative) while the loss agrees to 1.7e-5.
# float64 holds the same step to 1e-9, which is the parity guard.
STEP_TOL = {"float64": 1e-9, "float32": 1e-2}
DTYPES = {"float64": (jnp.float64, torch.float64), "float32": (jnp.float32, torch.float32)}
CPS_WEIGHT, LR, TOTAL_STEPS = 1.5, 0.01, 4


@pytest.fixture(scope="module", autouse=True)
def torch_threads():
    """One thread: on a busy machine with few cores PyTorch's thread pool is 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["float64", "float32"])
def precision(request):
    """The precision of both sides; float64 switches jax_enable_x64 on for this test only."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param == "float64")
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", before)


def cps_config(precision, depth):
    """configs/demo.py with the reference's CPS step (no CutMix) and SGD, on a narrow net."""
    config = demo.get_config("runlocal,recipe=reference")  # plain argmax targets, constant λ
    config.model.update(
        backbone=f"resnet{depth}",
        stem="deep",
        output_stride=16,
        **HEAD,
        aspp_rates=ASPP_RATES,
        multi_grid=(1, 2, 4),
        dtype=precision,
        bn_running_var="unbiased",
        classifier_bias_init="torch",
    )
    config.method = "cps"
    config.loss.update(
        supervised="ce",
        consistency="cps",
        cps_weight=CPS_WEIGHT,
        cps_reduction="mean",
        cps_on="both",
        joint_bn=False,
    )
    config.optim.update(
        name="sgd",
        lr=LR,
        momentum=0.9,
        weight_decay=1e-4,
        poly_power=0.9,
        warmup_steps=0,
        lr_scaling="none",
    )
    return config


# ---------------------------------------------------------------- the two nets, one set of numbers


def random_nets(config, seeds):
    """graphdef and, per seed, (params, batch_stats) of a cps_jax net with random weights and BN
    statistics, drawn in NumPy: the same numbers in both precisions, no init program to compile.

    The last BN of each residual branch has a small scale, as a trained net's often have: a random
    deep net in train mode is chaotic (each BN over a few values per channel multiplies small
    differences), and float32 rounding would then decide more than the code under test does."""
    last_bn = "bn2" if config.model.backbone in ("resnet18", "resnet34") else "bn3"
    model = nnx.eval_shape(lambda: build_model(config.model, NUM_CLASSES, nnx.Rngs(0)))
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

    def fill(rng, path, leaf):
        keys = [p.key for p in path]
        name, shape = keys[-1], leaf.shape
        if name == "kernel":  # Kaiming normal, fan_in
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name == "scale" and keys[1].startswith("layer") and keys[-2] == last_bn:
            value = rng.uniform(0.1, 0.3, shape)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            value = rng.normal(size=shape) * 0.1
        return jnp.asarray(value, leaf.dtype)

    nets = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        draw = functools.partial(jax.tree_util.tree_map_with_path, functools.partial(fill, rng))
        nets.append((draw(params), draw(stats)))
    return graphdef, nets


_HEAD = {  # reference (PyTorch) module -> cps_jax module, outside the backbone
    **{f"head.aspp.map_convs.{i}": f"aspp/map_conv{i}" for i in range(4)},
    **{
        f"head.aspp.{m}": f"aspp/{m}"
        for m in (
            "map_bn",
            "red_conv",
            "global_pooling_conv",
            "global_pooling_bn",
            "pool_red_conv",
            "red_bn",
        )
    },
    "head.reduce.0": "reduce_conv",
    "head.reduce.1": "reduce_bn",
    "head.last_conv.0": "last_conv1",
    "head.last_conv.1": "last_bn1",
    "head.last_conv.3": "last_conv2",
    "head.last_conv.4": "last_bn2",
    "classifier": "classifier",
}
_TENSORS = {  # PyTorch tensor -> cps_jax leaf, for convs (4-D weight) and BNs
    "conv": {"weight": "kernel", "bias": "bias"},
    "bn": {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"},
}


def jax_key(name: str, shape) -> str:
    """The flat cps_jax key ("backbone/layer1/block0/conv1/kernel", "aspp/map_bn/var", ...) of a
    reference state_dict tensor; the backbone goes through the checkpoint converter's mapping."""
    if name.startswith("backbone."):
        out, _ = P.convert_state_dict({name.removeprefix("backbone."): np.zeros(shape)}, "v1c")
        (key,) = out
        return key
    module, _, tensor = name.rpartition(".")
    kind = "conv" if "conv" in _HEAD[module] or module == "classifier" else "bn"
    return f"{_HEAD[module]}/{_TENSORS[kind][tensor]}"


def flat(params, stats) -> dict:
    return {
        **traverse_util.flatten_dict(params, sep="/"),
        **traverse_util.flatten_dict(stats, sep="/"),
    }


def torch_net(depth, params, stats, dtype):
    """The reference DeepLabv3+ holding the cps_jax net's numbers (kernels HWIO -> OIHW)."""
    net = torch_deeplab.DeepLabV3Plus(NUM_CLASSES, depth, **HEAD, aspp_rates=ASPP_RATES)
    net = net.to(dtype)
    source = {k: np.asarray(v) for k, v in flat(params, stats).items()}
    used, state = set(), {}
    for name, tensor in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = tensor
            continue
        key = jax_key(name, tuple(tensor.shape))
        value = source[key]
        value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
        assert value.shape == tuple(tensor.shape), name
        state[name] = torch.tensor(np.ascontiguousarray(value), dtype=dtype)
        used.add(key)
    assert used == set(source), sorted(set(source) - used)  # every cps_jax array has a home
    net.load_state_dict(state)
    return net


def torch_flat(net, what: str, opt=None) -> dict:
    """{cps_jax key: numpy} of a torch net's parameters' gradients ("grad"), the last update
    of its SGD `opt` ("update"), or its state_dict ("state")."""
    if what == "grad":
        items = [(n, p.grad) for n, p in net.named_parameters()]
    elif what == "update":
        lr = {p: g["lr"] for g in opt.param_groups for p in g["params"]}
        items = [(n, -lr[p] * opt.state[p]["momentum_buffer"]) for n, p in net.named_parameters()]
    else:
        items = [(n, t) for n, t in net.state_dict().items() if "num_batches" not in n]
    out = {}
    for name, tensor in items:
        value = tensor.detach().numpy()
        out[jax_key(name, tuple(tensor.shape))] = (
            value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
        )
    return out


def nchw(x):
    return torch.tensor(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def error(got, want) -> float:
    """Relative error |got - want| / |want| (2-norms over the array)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def check(got: dict, want: dict, tol: float, what: str) -> float:
    """Every array of `got` within `tol` of `want` (same keys); returns the largest error."""
    assert set(got) == set(want), what
    errors = {k: error(got[k], want[k]) for k in want}
    worst = max(errors, key=errors.get)
    print(f"{what}: max error {errors[worst]:.2e} ({worst})")
    bad = {k: e for k, e in errors.items() if not e <= tol}
    assert not bad, f"{what}: {len(bad)} arrays off by more than {tol}: {bad}"
    return errors[worst]


def images(seed, n=N):
    """Noise with a brightness and contrast of each image's own: batch statistics of the global
    mean (the image-pooling BN sees n = 2 values) then differ well between images. Images that
    differ only by their noise pool to nearly the same features, and that BN's normalisation of
    their tiny difference multiplies rounding errors by 100s (float32: logits differ by 1e-4)."""
    rng = np.random.default_rng(seed)
    scale, offset = rng.uniform(0.5, 2.0, (n, 1, 1, 3)), rng.normal(size=(n, 1, 1, 3))
    return rng.normal(size=(n, H, W, 3)) * scale + offset


# ---------------------------------------------------------------- forward and BN statistics


@pytest.mark.slow
def test_logits_and_running_statistics_match_pytorch(precision):
    dtype, tdtype = DTYPES[precision]
    tol = TOL[precision]
    graphdef, [(params, stats)] = random_nets(cps_config(precision, depth=50), [0])
    net = torch_net(50, params, stats, tdtype)
    x = images(1).astype(dtype)
    forward = jax.jit(apply_net, static_argnums=0, static_argnames="train")

    got, _ = forward(graphdef, params, stats, x, train=False)
    assert got.dtype == dtype
    with torch.no_grad():
        want = nhwc(net.eval()(nchw(x)))
    check({"logits": got}, {"logits": want}, tol, f"{precision} eval logits")

    got, new_stats = forward(graphdef, params, stats, x, train=True)
    with torch.no_grad():
        want = nhwc(net.train()(nchw(x)))
    check({"logits": got}, {"logits": want}, tol, f"{precision} train logits")
    moved = {k: v for k, v in torch_flat(net, "state").items() if k.endswith(("/mean", "/var"))}
    check(traverse_util.flatten_dict(new_stats, sep="/"), moved, tol, f"{precision} BN stats")


# ---------------------------------------------------------------- the CPS step and SGD


def cps_batches(dtype, steps=2):
    """Per step: N_L labeled images whose labels have ignored (255) pixels, N_U unlabeled ones."""
    out = []
    for i in range(steps):
        rng = np.random.default_rng(10 + i)
        labels = rng.integers(0, NUM_CLASSES, (N_L, H, W))
        labels[rng.random((N_L, H, W)) < 0.2] = 255
        labels[:, :4] = 255  # and a band, as a padded crop has
        out.append(
            dict(
                image_l=images(20 + i, N_L).astype(dtype),
                mask_l=labels.astype(np.int32),
                image_u=images(30 + i, N_U).astype(dtype),
            )
        )
    return out


def capture():
    """An optax stage that passes its input (gradients, updates) on and keeps it as its state."""
    return optax.GradientTransformation(
        init=lambda params: jax.tree.map(jnp.zeros_like, params),
        update=lambda grads, state, params=None: (grads, grads),
    )


def torch_sgd(net, jax_trace, lr):
    """The reference's SGD for `net` at learning rate `lr`, its momentum buffers taken from
    cps_jax's (None: a fresh optimizer, whose first step starts the buffers)."""
    opt = torch_deeplab.sgd(net, lr, momentum=0.9, weight_decay=1e-4)
    if jax_trace is not None:
        trace = traverse_util.flatten_dict(jax_trace, sep="/")
        for name, param in net.named_parameters():
            value = np.asarray(trace[jax_key(name, tuple(param.shape))])
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
            opt.state[param]["momentum_buffer"] = torch.tensor(np.ascontiguousarray(value))
    return opt


@pytest.mark.slow
def test_cps_step_gradients_and_sgd_match_pytorch(precision):
    dtype, tdtype = DTYPES[precision]
    tol = STEP_TOL[precision]
    config = cps_config(precision, depth=18)
    # cps_jax's optimizer between two stages that record each step's gradients and updates.
    sgd, schedule = optim.make(config.optim, TOTAL_STEPS)
    tx = optax.chain(capture(), sgd, capture())
    graphdef, (left, right) = random_nets(config, [1, 2])
    step = jax.jit(make_train_step(graphdef, config, tx, schedule))
    start = {"left": left, "right": right}
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        nets={name: {"params": p, "batch_stats": s} for name, (p, s) in start.items()},
        opt_states={name: tx.init(p) for name, (p, _) in start.items()},
    )
    errors = []  # the largest error of each comparison, each already held to `tol` by check()
    batches = list(cps_batches(dtype))
    for it, batch in enumerate(batches):
        # Both sides start each step from cps_jax's state: the nets are chaotic enough that
        # float32 rounding of one step grows to more than 1e-4 in the next one's gradients.
        tnets = {
            name: torch_net(18, net["params"], net["batch_stats"], tdtype).train()
            for name, net in state.nets.items()
        }
        lr = torch_deeplab.poly_lr(LR, it, TOTAL_STEPS)
        trace = {n: optax.tree_utils.tree_get(s, "trace") for n, s in state.opt_states.items()}
        topts = {
            name: torch_sgd(net, trace[name] if it else None, lr) for name, net in tnets.items()
        }

        state, metrics = step(state, batch, jax.random.key_data(jax.random.key(it)))
        loss = torch_deeplab.cps_step(
            tnets["left"],
            tnets["right"],
            nchw(batch["image_l"]),
            nchw(batch["image_u"]),
            torch.tensor(batch["mask_l"], dtype=torch.long),
            CPS_WEIGHT,
        )
        loss.backward()
        for opt in topts.values():
            opt.step()

        what = f"{precision} step {it}"
        errors.append(check({"loss": metrics["loss"]}, {"loss": loss.item()}, tol, f"{what} loss"))
        for name, tnet in tnets.items():
            net, opt_state = state.nets[name], state.opt_states[name]
            errors.append(check(
                traverse_util.flatten_dict(opt_state[0], sep="/"),
                torch_flat(tnet, "grad"),
                tol,
                f"{what} {name} gradients",
            ))
            # The updates on their own scale: cps_jax's as the optimizer returned them,
            # PyTorch's -lr * momentum buffer (what its SGD subtracts; weight decay inside).
            errors.append(check(
                traverse_util.flatten_dict(opt_state[2], sep="/"),
                torch_flat(tnet, "update", topts[name]),
                tol,
                f"{what} {name} updates",
            ))
            # The parameters after the step, and the BN statistics after its two forwards.
            got, want = flat(net["params"], net["batch_stats"]), torch_flat(tnet, "state")
            errors.append(check(got, want, tol, f"{what} {name} parameters and BN statistics"))
    # Every step compared (loss + 3 views of each net), all within the tolerance, and the steps
    # moved the nets by far more than it: the comparisons are not of unchanged arrays.
    assert len(errors) == len(batches) * 7 and max(errors) <= tol
    moved = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(left[0]), jax.tree.leaves(state.nets["left"]["params"]))
    )
    assert moved > 100 * TOL[precision], moved  # far beyond float32 rounding
