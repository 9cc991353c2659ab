"""Cross Pseudo Supervision (Chen et al., CVPR 2021), and CPS + CutMix.

Two nets of one architecture, initialised differently, see the same images. Each net's argmax
prediction, one-hot and without gradient, is the target of a cross-entropy for the other:

    L = CE(left, y) + CE(right, y) + λ(step) · L_cps

`config.loss` and `config.pseudo` choose how (cps_jax/methods/cross_term.py): which images the
cross term covers (`cps_on`), how its labeled and unlabeled parts combine (`cps_reduction`), the λ
schedule, hard pseudo labels or probabilities (`consistency`), and the pseudo-label remedies.
"""

import jax
import jax.numpy as jnp

from cps_jax import augment, cutmix
from cps_jax.methods.base import Aux, Method, register
from cps_jax.methods.cross_term import CrossTerm, initial_extra


def cps_loss(tools, config):
    """CPS on the labeled batch and one unlabeled batch. With `config.strong` on, the nets learn on
    a colour-perturbed view of the unlabeled images and their targets come from a pass without
    gradient over the clean images (as with CutMix); off, one pass as the reference."""
    cross = CrossTerm.from_config(config)
    augment.check(config.strong)
    strong = not augment.is_off(config.strong)
    bn_train = config.loss.cutmix_pseudo_bn == "train"

    def loss(params, stats, frozen, extra, batch, draws, step):
        image_u, pass_stats, clean = batch["image_u"], stats, None
        if strong:  # the clean view's logits, without gradient, are the targets' source
            clean, clean_stats = tools.pair(
                jax.lax.stop_gradient(params), stats, [image_u], train=bn_train
            )
            pass_stats = clean_stats if bn_train else stats
            image_u = augment.strong_view(image_u, draws["strong"], config.strong)
        logits, new_stats = tools.pair(params, pass_stats, [batch["image_l"], image_u], train=True)
        labeled = {net: out[0] for net, out in logits.items()}
        unlabeled = {net: out[1] for net, out in logits.items()}
        sources = {net: out[0] for net, out in clean.items()} if strong else unlabeled
        targets_u = cross.targets(sources, extra, batch.get("classes_u"))
        cps_u = cross(unlabeled, targets_u)
        cps_l = cross(labeled, cross.targets(labeled, extra, batch.get("classes_l")))
        total, metrics = cross.total(labeled, batch, cps_l, cps_u, step)
        new_extra = cross.follow_prior(extra, batch["mask_l"], sources)
        return total, Aux(metrics, new_stats, new_extra, cross.shown(targets_u))

    return loss


def cps_cutmix_loss(tools, config):
    """CPS whose unlabeled term is on CutMix-ed images: each net's targets are its predictions on
    the two source batches, mixed with the same boxes; the nets learn on the mixed images (and,
    with `config.strong`, a colour-perturbed view of them). With `config.cutmix.unmixed_term`,
    they also learn the first batch's own targets on its unmixed (perturbed) view, as plain CPS."""
    cross = CrossTerm.from_config(config)
    augment.check(config.strong)
    unmixed_term = config.cutmix.unmixed_term
    # Pseudo-label passes in BN train mode, as the reference (by default).
    bn_train = config.loss.cutmix_pseudo_bn == "train"

    def loss(params, stats, frozen, extra, batch, draws, step):
        u0, u1, masks = batch["image_u"], batch["image_u1"], draws["masks"]
        mixed = augment.strong_view(cutmix.mix(u0, u1, masks), draws["strong"], config.strong)
        learned = [batch["image_l"], mixed]
        if unmixed_term:
            learned.append(augment.strong_view(u0, draws["unmixed"], config.strong))
        # No gradient through the targets.
        sources, source_stats = tools.pair(jax.lax.stop_gradient(params), stats, [u0, u1], train=bn_train)
        logits, new_stats = tools.pair(params, source_stats if bn_train else stats, learned, train=True)
        labeled = {net: out[0] for net, out in logits.items()}
        unlabeled = {net: out[1] for net, out in logits.items()}
        tags = (batch.get("classes_u"), batch.get("classes_u1"))
        targets_u = cross.mixed_targets(sources, masks, extra, tags)
        cps_u = cross(unlabeled, targets_u)
        if unmixed_term:
            first = {net: out[0] for net, out in sources.items()}
            targets_0 = cross.targets(first, extra, batch.get("classes_u"))
            cps_u = (cps_u + cross({net: out[2] for net, out in logits.items()}, targets_0)) / 2
        cps_l = cross(labeled, cross.targets(labeled, extra, batch.get("classes_l")))
        total, metrics = cross.total(labeled, batch, cps_l, cps_u, step)
        predicted = {net: jnp.concatenate(out) for net, out in sources.items()}
        new_extra = cross.follow_prior(extra, batch["mask_l"], predicted)
        return total, Aux(metrics, new_stats, new_extra, cross.shown(targets_u))

    return loss


def strong_draws(config, batch, key):
    """A key for the strong view of the unlabeled images."""
    return {"strong": jax.random.fold_in(key, 1)}


def cutmix_draws(config, batch, key):
    """The step's CutMix boxes (one per unlabeled image pair) and keys for the strong views of the
    mixed and (with cutmix.unmixed_term) the unmixed images."""
    n, h, w, _ = batch["image_u"].shape
    return {
        "masks": cutmix.box_masks(key, n, h, w, config.cutmix),
        "strong": jax.random.fold_in(key, 1),
        "unmixed": jax.random.fold_in(key, 3),  # 2: the labeled view (train_step)
    }


PAIR = dict(nets=("left", "right"), trained=("left", "right"), initial_extra=initial_extra)
CPS = register(Method("cps", streams=("l", "u"), make_loss=cps_loss, draws=strong_draws, **PAIR))
CPS_CUTMIX = register(
    Method(
        "cps_cutmix",
        streams=("l", "u", "u1"),
        make_loss=cps_cutmix_loss,
        draws=cutmix_draws,
        **PAIR,
    )
)
