"""Output-space adversarial adaptation: AdaptSegNet (Tsai et al. 2018, `adaptseg`: the
discriminator sees the softmax) and AdvEnt (Vu et al. 2019, `advent`: it sees the weighted
self-information maps −p_c log p_c / log C).

A fully convolutional discriminator D (5 convs, kernel 4, stride 2, widths w-2w-4w-8w-1, LeakyReLU
0.2; w = `adapt.disc_width`, 64 in the papers) tells source outputs from target outputs. Its
parameters and Adam state (lr `adapt.disc_lr` 1e-4, β (0.9, 0.99), poly decay) live in the train
state's `extra`, so they are checkpointed but never evaluated or exported, and it is updated in
the same pure step as the segmenter:

  segmenter  L = CE(source) + λ_adv · GAN(D(target outputs), "source")   (λ_adv 1e-3; D fixed)
  D          0.5 · [GAN(D(source outputs), "source") + GAN(D(target outputs), "target")] on the
             segmenter's outputs under stop_gradient, one Adam step.

The segmenter's gradient reaches it only through the first line, D's only through the second.
GAN is BCE on logits (`adapt.gan="bce"`, the papers) or least squares (`"ls"`).
"""

import math

import jax
import jax.numpy as jnp
import optax

from cps_jax import losses, pseudo_labels
from cps_jax.methods.base import Aux, Method, register
from cps_jax.methods.terms import supervised_loss_fn

GANS = ("bce", "ls")
SOURCE, TARGET = 1.0, 0.0  # the discriminator's labels


def init_discriminator(key, in_channels: int, width: int) -> list:
    """[(kernel [4, 4, in, out], bias [out])] of the 5 convs, PyTorch's default init
    (uniform ±1/sqrt(fan_in) for kernel and bias)."""
    widths = [in_channels, width, 2 * width, 4 * width, 8 * width, 1]
    layers = []
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
        k_w, k_b = jax.random.split(jax.random.fold_in(key, i))
        bound = 1.0 / math.sqrt(16 * c_in)
        layers.append(
            {
                "kernel": jax.random.uniform(k_w, (4, 4, c_in, c_out), jnp.float32, -bound, bound),
                "bias": jax.random.uniform(k_b, (c_out,), jnp.float32, -bound, bound),
            }
        )
    return layers


def discriminator(params: list, x) -> jax.Array:
    """D's logits [N, h, w, 1] for maps x [N, H, W, C]: each conv (padding 1, stride 2) halves
    a size, rounding down (64 -> 2, 96 x 160 -> 3 x 5)."""
    x = losses.at_least_f32(x)
    for i, layer in enumerate(params):
        x = jax.lax.conv_general_dilated(
            x, layer["kernel"], (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        ) + layer["bias"]
        if i < len(params) - 1:
            x = jax.nn.leaky_relu(x, 0.2)
    return x


def gan_loss(logits, label: float, kind: str) -> jax.Array:
    """Mean over D's outputs: BCE with logits against `label`, or the squared distance of the
    output to it (LS-GAN)."""
    if kind == "bce":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))
    if kind == "ls":
        return jnp.mean(jnp.square(logits - label))
    raise ValueError(f"config.adapt.gan must be one of {GANS}, got {kind!r}")


def self_information(logits) -> jax.Array:
    """AdvEnt's weighted self-information maps −p_c log p_c / log C: [N, H, W, C]."""
    logits = losses.at_least_f32(logits)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.exp(log_p) * log_p / jnp.log(logits.shape[-1])


INPUTS = {
    "adaptseg": lambda logits: jax.nn.softmax(losses.at_least_f32(logits), axis=-1),
    "advent": self_information,
}


def discriminator_optimizer(config):
    """Adam (lr adapt.disc_lr, β (0.9, 0.99)), poly decay over the run, as AdaptSegNet."""
    schedule = optax.polynomial_schedule(
        float(config.adapt.disc_lr), 0.0, float(config.optim.poly_power), max(config.total_steps, 1)
    )
    return optax.adam(schedule, b1=0.9, b2=0.99)


def initial_discriminator(config, num_classes: int) -> dict:
    key = jax.random.fold_in(jax.random.key(int(config.seed)), 7_919)
    params = init_discriminator(key, num_classes, int(config.adapt.disc_width))
    return {"disc": {"params": params, "opt": discriminator_optimizer(config).init(params)}}


def discriminator_update(disc: dict, source_maps, target_maps, tx, kind: str):
    """(D's loss, D after one step) on maps taken as constants."""
    source_maps, target_maps = jax.lax.stop_gradient((source_maps, target_maps))

    def d_loss(p):
        real = gan_loss(discriminator(p, source_maps), SOURCE, kind)
        fake = gan_loss(discriminator(p, target_maps), TARGET, kind)
        return 0.5 * (real + fake)

    value, grads = jax.value_and_grad(d_loss)(disc["params"])
    updates, opt = tx.update(grads, disc["opt"], disc["params"])
    return value, {"params": optax.apply_updates(disc["params"], updates), "opt": opt}


def adversarial_loss(tools, config, *, inputs: str):
    supervised = supervised_loss_fn(config.loss)
    kind, weight = str(config.adapt.gan), float(config.adapt.adversarial_weight)
    gan_loss(jnp.zeros(1), SOURCE, kind)  # checks the kind before any work
    to_maps, tx = INPUTS[inputs], discriminator_optimizer(config)

    def loss(params, stats, frozen, extra, batch, draws, step):
        (source, target), new_stats = tools.run(
            params["left"], stats["left"], [batch["image_l"], batch["image_u"]], train=True
        )
        sup = supervised(source, batch["mask_l"])
        source_maps, target_maps = to_maps(source), to_maps(target)
        fixed = jax.lax.stop_gradient(extra["disc"]["params"])
        fool = gan_loss(discriminator(fixed, target_maps), SOURCE, kind)
        value = sup + weight * fool
        d_value, disc = discriminator_update(extra["disc"], source_maps, target_maps, tx, kind)
        metrics = dict(loss=value, sup_left=sup, adversarial=fool, discriminator=d_value)
        pseudo = pseudo_labels.select(target, pseudo_labels.Options())
        return value, Aux(metrics, {"left": new_stats}, {**extra, "disc": disc}, [pseudo])

    return loss


for _name in INPUTS:
    register(
        Method(
            _name,
            nets=("left",),
            trained=("left",),
            streams=("l", "u"),
            make_loss=lambda tools, config, _inputs=_name: adversarial_loss(tools, config, inputs=_inputs),
            initial_extra=initial_discriminator,
        )
    )
