"""CycleGAN core (cps_jax/cyclegan): nets' shapes, losses and the history pool against NumPy,
the phases' gradient isolation, a checkpoint round trip and a short training run.

One tiny config (w=8, 1 residual block, discriminator width 8, 32x32 images) and one compiled
step serve every test that needs a train state (the `run` fixture).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cps_jax import checkpointing
from cps_jax.cyclegan import config as cyclegan_config
from cps_jax.cyclegan import losses, nets, optim, pool
from cps_jax.cyclegan import state as cg_state
from cps_jax.cyclegan import step as cg_step

SIZE = 32
BATCH = 2
STEPS = 16


def smooth_images(rng, n, size=SIZE):
    """Random blocky colour images in [-1, 1]: 4x4 colour cells, each 8x8 pixels."""
    cells = rng.uniform(-1, 1, (n, 4, 4, 3))
    return np.kron(cells, np.ones((1, size // 4, size // 4, 1))).astype(np.float32)


def colour_shift(images):
    """The target domain: channels reversed, contrast halved-ish, brightened."""
    return np.clip(images[..., ::-1] * 0.6 + 0.3, -1, 1).astype(np.float32)


def small_config():
    config = cyclegan_config.get_config()
    config.model.gen_blocks = 1
    config.pool_size = 4  # fills in 2 steps: the run also goes through the full-pool rule
    config.optim.lr = 1e-3  # a visible drop of the cycle error within STEPS steps
    config.optim.total_steps = STEPS
    return config


@pytest.fixture(scope="module")
def run():
    """A short run on two synthetic domains: source = blocky images, target = other blocky
    images colour-shifted (unpaired)."""
    config = small_config()
    tx, schedule = optim.make(config.optim)
    initial = cg_state.init_state(config, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "source": jnp.asarray(smooth_images(rng, BATCH)),
        "target": jnp.asarray(colour_shift(smooth_images(rng, BATCH))),
    }
    step = jax.jit(cg_step.make_train_step(config, tx, schedule))
    state, history = initial, []
    for i in range(STEPS):
        state, metrics = step(state, batch, jax.random.fold_in(jax.random.key(1), i))
        history.append(jax.device_get(metrics))
    return {
        "config": config,
        "tx": tx,
        "initial": initial,
        "state": state,
        "batch": batch,
        "history": history,
    }


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("shape", [(BATCH, SIZE, SIZE, 3), (1, 24, 40, 3)])
def test_generator_keeps_shape_and_range(run, shape):
    params = run["state"].nets["G"]["params"]
    # Far outside [-1, 1], so that the output would leave it without the final tanh.
    images = 20 * jax.random.normal(jax.random.key(3), shape)
    out = nets.translate(params, images)
    assert out.shape == images.shape
    assert np.all(np.abs(np.asarray(out)) <= 1.0)
    assert nets.generator_sizes(params) == {"channels": 3, "gen_width": 8, "gen_blocks": 1}


def patch_grid(size: int, layers: int = 3) -> int:
    """The PatchGAN's output side by the conv arithmetic: out = (in + 2*pad - k) // s + 1, with
    k=4, pad=1: `layers` stride-2 convs, then two stride-1 convs (C8w and the 1-channel one)."""
    for _ in range(layers):
        size = (size + 2 * 1 - 4) // 2 + 1
    for _ in range(2):
        size = (size + 2 * 1 - 4) // 1 + 1
    return size


@pytest.mark.parametrize("size,expected", [(32, 2), (64, 6), (256, 30)])
def test_discriminator_patch_grid(size, expected):
    assert patch_grid(size) == expected  # 32 -> 16, 8, 4 -> 3, 2; 256 -> 30 (the paper's 30x30)
    model_config = cyclegan_config.get_config().model
    graphdef = nets.net_graphdef(model_config, nets.DISCRIMINATOR)
    abstract = jax.eval_shape(lambda: nets.init_net(model_config, nets.DISCRIMINATOR, 0)[1])
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    out = jax.eval_shape(lambda p, x: nets.apply(graphdef, p, x), abstract, x)
    assert out.shape == (2, expected, expected, 1)


def test_up_conv_is_pytorch_conv_transpose():
    """The generator's up conv is ConvTranspose2d(3, stride 2, padding 1, output_padding 1) with
    the kernel flipped: replayed here as PyTorch defines it, each input pixel scattering
    x * W into the output at 2 * i - padding + a."""
    layer = nets._up_conv(2, 3, rngs=nnx.Rngs(0))
    kernel = np.asarray(layer.kernel[...])  # [3, 3, in, out]
    bias = np.asarray(layer.bias[...])
    x = np.random.default_rng(1).normal(size=(1, 5, 4, 2)).astype(np.float32)
    torch_weight = kernel[::-1, ::-1]  # W[a, b, in, out]
    h, w = x.shape[1:3]
    full = np.zeros((1, 2 * h + 1, 2 * w + 1, 3))  # (H-1)*2 + 3 before cropping the padding
    for i in range(h):
        for j in range(w):
            full[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum(
                "c,abco->abo", x[0, i, j], torch_weight
            )
    # padding 1 crops one row / column at each end, output_padding 1 adds one back at the end:
    # rows 1 .. 2h of the 2h + 1.
    expected = full[:, 1 : 1 + 2 * h, 1 : 1 + 2 * w] + bias
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), expected, rtol=1e-5, atol=1e-5)


def test_instance_norm_and_reflect_pad():
    x = np.random.default_rng(2).normal(size=(2, 5, 6, 3)).astype(np.float32) * 3 + 1
    y = np.asarray(nets.instance_norm(jnp.asarray(x)))
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    padded = np.asarray(nets.reflect_pad(jnp.asarray(x), 2))
    np.testing.assert_array_equal(padded[:, 0, 2:-2], x[:, 2])  # mirrored, edge not repeated
    np.testing.assert_array_equal(padded[:, 2:-2, 1], x[:, :, 1])


# ---------------------------------------------------------------- losses


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    return [rng.normal(size=(2, 6, 6, 3)).astype(np.float32) for _ in range(3)]


def test_lsgan_losses(arrays):
    real, fake, _ = arrays
    expected_d = 0.5 * (np.mean((real - 1) ** 2) + np.mean(fake**2))
    np.testing.assert_allclose(losses.lsgan_discriminator_loss(real, fake), expected_d, rtol=1e-6)
    np.testing.assert_allclose(
        losses.lsgan_generator_loss(fake), np.mean((fake - 1) ** 2), rtol=1e-6
    )


def test_cycle_and_identity_losses(arrays):
    a, b, _ = arrays
    l1 = np.mean(np.abs(a - b))
    np.testing.assert_allclose(losses.cycle_loss(a, b), 10 * l1, rtol=1e-6)
    np.testing.assert_allclose(losses.identity_loss(a, b), 5 * l1, rtol=1e-6)
    np.testing.assert_allclose(losses.cycle_loss(a, b, weight=3.0), 3 * l1, rtol=1e-6)


# ---------------------------------------------------------------- history pool


def np_query(stored, count, images, use_stored, index):
    """The official ImagePool.query, image by image, with the given draws."""
    stored, returned = stored.copy(), []
    for image, use, slot in zip(images, use_stored, index):
        if count < len(stored):
            stored[count] = image
            count += 1
            returned.append(image)
        elif use:
            returned.append(stored[slot].copy())
            stored[slot] = image
        else:
            returned.append(image)
    return stored, count, np.stack(returned)


def distinct_images(n, start, shape=(2, 2, 1)):
    """Images whose every pixel is their number: which one came back is then plain."""
    return (start + np.arange(n, dtype=np.float32)).reshape(n, 1, 1, 1) * np.ones(shape, np.float32)


def test_pool_fills_then_follows_rule():
    size = 4
    p = pool.init_pool(size, (2, 2, 1))
    first = distinct_images(3, 1)
    p, out = pool.query(p, jnp.asarray(first), pool.draws(jax.random.key(0), 3, size))
    np.testing.assert_array_equal(out, first)  # filling: the inputs come back...
    np.testing.assert_array_equal(p["images"][:3], first)  # ...and are stored
    assert int(p["count"]) == 3 and not np.any(p["images"][3])
    # The next batch crosses the boundary: one image fills the pool, the others follow the rule.
    stored, count = np.asarray(p["images"]), int(p["count"])
    for k in range(3):
        batch = distinct_images(6, 100 * (k + 1))
        d = pool.draws(jax.random.key(10 + k), 6, size)
        p, out = jax.jit(pool.query)(p, jnp.asarray(batch), d)
        stored, count, expected = np_query(
            stored, count, batch, np.asarray(d["use_stored"]), np.asarray(d["index"])
        )
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(p["images"], stored)
        assert int(p["count"]) == count == size
    assert np.any(np.asarray(d["use_stored"])) and not np.all(np.asarray(d["use_stored"]))


def test_pool_returns_stored_half_the_time():
    size, n = 50, 20000
    p = {"images": jnp.asarray(distinct_images(size, 0, (1, 1, 1))), "count": jnp.int32(size)}
    new = distinct_images(n, 1000, (1, 1, 1))
    d = pool.draws(jax.random.key(5), n, size)
    p, out = jax.jit(pool.query)(p, jnp.asarray(new), d)
    from_pool = np.asarray(out).ravel() != new.ravel()
    np.testing.assert_array_equal(from_pool, np.asarray(d["use_stored"]))
    assert abs(from_pool.mean() - 0.5) < 4 * 0.5 / np.sqrt(n)  # 4 sigma
    # Every slot is drawn, about equally often.
    counts = np.bincount(np.asarray(d["index"])[from_pool], minlength=size)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    assert int(p["count"]) == size


def test_pool_size_zero_passes_through():
    p = pool.init_pool(0, (2, 2, 1))
    images = jnp.asarray(distinct_images(3, 1))
    p2, out = pool.query(p, images, pool.draws(jax.random.key(0), 3, 0))
    np.testing.assert_array_equal(out, images)
    assert p2["images"].shape == (0, 2, 2, 1)


# ---------------------------------------------------------------- gradients and schedule


def micro_nets(seed=0):
    """A smaller config's four nets (1 residual block, 2-layer PatchGAN) with N(0, 0.02) params
    drawn by NumPy: nothing to compile for their init."""
    model_config = cyclegan_config.get_config().model
    model_config.update(gen_width=4, gen_blocks=1, disc_width=4, disc_layers=2)
    rng = np.random.default_rng(seed)
    params = {}
    for name, kind in cg_state.KINDS.items():
        shapes = jax.eval_shape(lambda kind=kind: nets.init_net(model_config, kind, 0)[1])
        params[name] = jax.tree.map(
            lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), s.dtype), shapes
        )
    return cg_state.graphdefs(model_config), params


def max_abs(tree) -> float:
    return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


def test_phase_gradients_do_not_cross():
    """The generator loss reads D_S and D_T, but its gradient with respect to them is exactly
    zero; the discriminator loss reads its fakes, but its gradient with respect to them is
    exactly zero, so none reaches G or F (which enter it only through the fakes), whatever
    produced them. The step differentiates the sum of the two losses, so each net gets its own
    phase's gradient alone (that every net gets one: test_step_updates_every_net_and_the_pools)."""
    graphdefs, params = micro_nets()
    rng = np.random.default_rng(4)

    def images():
        return jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)

    batch = {"source": images(), "target": images()}
    fakes = {"S": images(), "T": images()}
    loss_config = cyclegan_config.get_config().loss

    def gen_loss(discs):
        return cg_step.generator_objective({**params, **discs}, batch, graphdefs, loss_config)[0]

    def disc_loss(fakes):
        return cg_step.discriminator_objective(params, batch, fakes, graphdefs)[0]

    discs = {name: params[name] for name in ("D_S", "D_T")}
    moved = jax.tree.map(lambda x: x + 0.05, discs)
    gen, disc_grads = jax.jit(jax.value_and_grad(gen_loss))(discs)
    assert float(gen) != float(jax.jit(gen_loss)(moved))  # it does read the discriminators
    assert max_abs(disc_grads) == 0.0
    disc, fake_grads = jax.jit(jax.value_and_grad(disc_loss))(fakes)
    assert float(disc) != float(jax.jit(disc_loss)(jax.tree.map(jnp.negative, fakes)))
    assert max_abs(fake_grads) == 0.0


def test_schedule_constant_then_linear_to_zero():
    config = cyclegan_config.get_config()
    config.optim.total_steps = 200
    assert config.optim.decay_start == 100  # follows total_steps
    _, schedule = optim.make(config.optim)
    lrs = [float(schedule(t)) for t in (0, 99, 100, 150, 200)]
    np.testing.assert_allclose(lrs, [2e-4, 2e-4, 2e-4, 1e-4, 0.0], rtol=1e-6, atol=1e-12)
    config.optim.decay_start = 300
    with pytest.raises(ValueError, match="decay_start"):
        optim.make(config.optim)


# ---------------------------------------------------------------- state, checkpoint, training


def test_step_updates_every_net_and_the_pools(run):
    initial, state = run["initial"], run["state"]
    assert int(state.step) == STEPS
    for name in cg_state.NETS:
        before = jax.tree.leaves(initial.nets[name]["params"])
        after = jax.tree.leaves(state.nets[name]["params"])
        assert any(not np.array_equal(a, b) for a, b in zip(before, after)), name
    for side in "ST":
        assert int(state.extra["pools"][side]["count"]) == run["config"].pool_size
    metrics = run["history"][-1]
    expected = {"g_adv", "f_adv", "cycle_s", "cycle_t", "identity_s", "identity_t", "gen_loss"}
    assert expected | {"d_s", "d_t", "rec_error_s", "rec_error_t", "lr"} == set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())


def test_checkpoint_round_trip(run, tmp_path):
    state = run["state"]
    checkpointer = checkpointing.Checkpointer(str(tmp_path / "checkpoints"))
    checkpointer.save(STEPS, state)
    checkpointer.wait()
    abstract = cg_state.abstract_state(run["config"], run["tx"])
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    restored = checkpointer.restore(STEPS, abstract)
    checkpointer.close()
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_training_reduces_cycle_error(run):
    """A few steps on the two synthetic domains: mean |F(G(s)) - s| and |G(F(t)) - t|, measured
    with translate() before and after, both drop well below their start."""
    batch = run["batch"]

    def errors(state):
        g, f = state.nets["G"]["params"], state.nets["F"]["params"]
        s, t = batch["source"], batch["target"]
        return (
            float(jnp.mean(jnp.abs(nets.translate(f, nets.translate(g, s)) - s))),
            float(jnp.mean(jnp.abs(nets.translate(g, nets.translate(f, t)) - t))),
        )

    before, after = errors(run["initial"]), errors(run["state"])
    first = run["history"][0]
    np.testing.assert_allclose(before, (first["rec_error_s"], first["rec_error_t"]), rtol=1e-4)
    assert after[0] < 0.85 * before[0] and after[1] < 0.85 * before[1], (before, after)
