"""Synthetic to real: two-domain data, the entropy loss, the output-space discriminator and its
separate update, ClassMix and the DACS teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from cps_jax import datasets, input_pipeline
from cps_jax.methods import adaptation, adversarial
from cps_jax.methods.nets import NetTools
from cps_jax.models.functional import net_graphdef
from cps_jax.state import init_nets


def test_entropy_loss_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32) * 2
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    entropy = -(p * np.log(p)).sum(-1) / np.log(5)
    np.testing.assert_allclose(adaptation.normalized_entropy(logits), entropy, rtol=1e-5)
    np.testing.assert_allclose(float(adaptation.entropy_loss(logits)), entropy.mean(), rtol=1e-5)
    # uniform -> 1, one-hot-like -> 0
    np.testing.assert_allclose(adaptation.normalized_entropy(np.zeros((1, 1, 1, 5))), 1.0, rtol=1e-6)
    info = np.asarray(adversarial.self_information(logits))
    np.testing.assert_allclose(info, -p * np.log(p) / np.log(5), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size,grid", [((64, 64), (2, 2)), ((96, 160), (3, 5)), ((33, 47), (1, 1))])
def test_discriminator_output_shapes(size, grid):
    params = adversarial.init_discriminator(jax.random.key(0), 7, 4)
    assert [p["kernel"].shape for p in params] == [
        (4, 4, 7, 4), (4, 4, 4, 8), (4, 4, 8, 16), (4, 4, 16, 32), (4, 4, 32, 1)
    ]  # fmt: skip
    out = adversarial.discriminator(params, jnp.zeros((2, *size, 7)))
    # each conv (kernel 4, stride 2, padding 1): floor((n + 2 - 4) / 2) + 1 = floor(n / 2)
    h, w = size
    for _ in range(5):
        h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
    assert (h, w) == grid and out.shape == (2, h, w, 1)


def test_gan_losses_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 3, 1)).astype(np.float32) * 3
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(
        float(adversarial.gan_loss(x, 1.0, "bce")), np.mean(-np.log(sig)), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(adversarial.gan_loss(x, 0.0, "bce")), np.mean(-np.log(1 - sig)), rtol=1e-5
    )
    np.testing.assert_allclose(float(adversarial.gan_loss(x, 1.0, "ls")), np.mean((x - 1) ** 2), rtol=1e-6)
    np.testing.assert_allclose(float(adversarial.gan_loss(x, 0.0, "ls")), np.mean(x**2), rtol=1e-6)
    with pytest.raises(ValueError, match="config.adapt.gan"):
        adversarial.gan_loss(x, 1.0, "wgan")


def _adversarial_setup(weight=1e-3, disc_lr=1e-4):
    config = demo.get_config("runlocal")
    config.method = "adaptseg"
    config.adapt.adversarial_weight = weight
    config.adapt.disc_lr = disc_lr
    config.adapt.disc_width = 4
    num_classes = 4
    nets = init_nets(config.model, num_classes, jax.random.key_data(jax.random.key(0)), "adaptseg")
    tools = NetTools.from_config(net_graphdef(config.model, num_classes), config)
    loss = adversarial.adversarial_loss(tools, config, inputs="adaptseg")
    extra = adversarial.initial_discriminator(config, num_classes)
    rng = np.random.default_rng(2)
    batch = {
        "image_l": rng.normal(size=(2, 32, 32, 3)).astype(np.float32),
        "mask_l": rng.integers(0, num_classes, (2, 32, 32)).astype(np.int32),
        "image_u": rng.normal(size=(2, 32, 32, 3)).astype(np.float32) + 1.0,
    }
    params = {"left": nets["left"]["params"]}
    stats = {"left": nets["left"]["batch_stats"]}
    return loss, params, stats, extra, batch, tools, config


def test_the_segmenter_learns_through_the_adversarial_term_and_the_discriminator_apart():
    loss, params, stats, extra, batch, tools, config = _adversarial_setup(weight=1.0)
    grad = lambda fn: jax.grad(lambda p: fn(p, stats, {}, extra, batch, None, 0), has_aux=True)(params)  # noqa: E731
    with_adv, aux = grad(loss)
    no_adv, aux0 = grad(_adversarial_setup(weight=0.0)[0])
    fast_d, aux_fast = grad(_adversarial_setup(weight=1.0, disc_lr=1e-2)[0])
    leaves = lambda t: jax.tree.leaves(t)  # noqa: E731
    # The adversarial term reaches the segmenter ...
    assert any(not np.allclose(a, b) for a, b in zip(leaves(with_adv), leaves(no_adv)))
    # ... and the discriminator's own update does not: its lr changes no segmenter gradient.
    for a, b in zip(leaves(with_adv), leaves(fast_d)):
        np.testing.assert_array_equal(a, b)
    # The reverse: D's update is the same whatever λ_adv (the segmenter's term does not move D),
    # and equals one Adam step of D's loss on the segmenter's outputs as constants.
    for a, b in zip(leaves(aux.extra["disc"]), leaves(aux0.extra["disc"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    (source, target), _ = tools.run(params["left"], stats["left"], [batch["image_l"], batch["image_u"]], train=True)
    maps = [jax.nn.softmax(x, -1) for x in (source, target)]

    def d_loss(p):
        real = jnp.mean(jax.nn.softplus(-adversarial.discriminator(p, maps[0])))
        fake = jnp.mean(jax.nn.softplus(adversarial.discriminator(p, maps[1])))
        return 0.5 * (real + fake)

    g = jax.grad(d_loss)(extra["disc"]["params"])
    tx = adversarial.discriminator_optimizer(config)
    updates, _ = tx.update(g, extra["disc"]["opt"], extra["disc"]["params"])
    expected = jax.tree.map(lambda p, u: p + u, extra["disc"]["params"], updates)
    for a, b in zip(leaves(aux.extra["disc"]["params"]), leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(leaves(expected), leaves(extra["disc"]["params"])))


def test_classmix_mask_by_hand():
    labels = np.array([[[0, 1, 2], [255, 1, 0]], [[3, 3, 1], [1, 255, 2]]])
    chosen = np.array([[False, True, False, False], [False, False, False, True]])
    mask = np.asarray(adaptation.classmix_mask(labels, chosen))
    np.testing.assert_array_equal(mask, [[[0, 1, 0], [0, 1, 0]], [[1, 1, 0], [0, 0, 0]]])


def test_half_of_each_images_classes_is_chosen():
    present = np.array([[1, 1, 1, 0, 1], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    counts = []
    for k in range(50):
        chosen = np.asarray(adaptation.choose_half(jax.random.key(k), present))
        assert not (chosen & ~present).any()
        counts.append(chosen.sum(-1))
    np.testing.assert_array_equal(np.unique(np.array(counts), axis=0), [[2, 1, 1, 0]])  # ceil(n/2)
    # every present class of the first image is drawn sometimes
    drawn = sum(np.asarray(adaptation.choose_half(jax.random.key(k), present))[0] for k in range(50))
    assert (drawn[[0, 1, 2, 4]] > 0).all()


def test_dacs_teacher_follows_alpha_t():
    config = demo.get_config("runlocal")
    hook = adaptation.dacs_teacher(config)
    nets = {"left": {"w": jnp.array(1.0)}, "right": {"w": jnp.array(0.0)}}
    assert float(hook(nets, 0)["right"]["w"]) == 1.0  # α_0 = 0: the teacher is the student
    np.testing.assert_allclose(float(hook(nets, 3)["right"]["w"]), 1 - 0.75)  # α_3 = 3/4
    np.testing.assert_allclose(float(hook(nets, 10_000)["right"]["w"]), 1 - 0.99, rtol=1e-6)


def test_a_source_domain_feeds_the_labeled_stream_and_the_target_the_unlabeled(tmp_path):
    config = demo.get_config("runlocal")
    config.method = "minent"
    config.data.data_dir = config.data.source.data_dir = str(tmp_path / "data")
    config.data.worker_threads = 0
    source = config.data.source
    source.name, source.domain, source.dataset_seed = "synthetic_streets", "render", 1
    for field in ("height", "width", "num_train", "num_validation"):
        source[field] = config.data[field]
    data = datasets.load(config.data)
    assert data.source is not None and data.source.class_names == data.class_names
    source_ids = {ex["id"] for ex in (data.source.train[i] for i in range(len(data.source.train)))}
    target_ids = {ex["id"] for ex in (data.train[i] for i in range(len(data.train)))}
    first = data.source.train[0]
    assert not np.array_equal(first["image"], data.train[0]["image"])  # another domain and seed
    batch = next(iter(input_pipeline.train_dataset(config, data)))
    assert batch["pixel_l"].all() and not batch["pixel_u"].any()
    assert len(source_ids) == len(data.source.train) and len(target_ids) == len(data.train)
    config.data.source.classes = ("road", "sky")
    with pytest.raises(ValueError, match="config.data.source: its classes"):
        datasets.load(config.data)
