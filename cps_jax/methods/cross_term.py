"""The cross term of CPS-style methods: each of two nets against the other's targets, and the total
loss around it.

`config.loss`:
  consistency    "cps": hard pseudo labels (the paper), through the remedies of `config.pseudo`
                 (cps_jax/pseudo_labels.py); "cpc": the other net's probabilities (CCT-style
                 ablation), to which the remedies do not apply.
  cps_on         "both" | "labeled" | "unlabeled": which images the cross term covers.
  cps_reduction  how the labeled and unlabeled parts combine: "mean" (the reference code): one
                 mean over the concatenated labeled + unlabeled pixels; "sum" (the paper's
                 formula): L_cps^l + L_cps^u, each a mean over its own pixels.
  cps_weight, warmup_fraction, cps_rampup_fraction: the λ schedule (cps_weight_schedule).
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from cps_jax import cutmix, losses, pseudo_labels
from cps_jax.methods.terms import sigmoid_rampup, supervised_loss_fn

CONSISTENCIES = ("cps", "cpc")
CPS_ON = ("both", "labeled", "unlabeled")
REDUCTIONS = ("mean", "sum")
OTHER = {"left": "right", "right": "left"}


def cps_weight_schedule(loss_config, total_steps: int):
    """step -> λ: 0 during the first `warmup_fraction` of training (supervised only), then ramped
    up over the next `cps_rampup_fraction` (sigmoid, as Mean Teacher), then `cps_weight`.
    Fractions of `total_steps`, so an override of the run's length moves them along."""
    weight = loss_config.cps_weight
    for field in ("warmup_fraction", "cps_rampup_fraction"):
        if not 0.0 <= loss_config[field] < 1.0:
            raise ValueError(f"config.loss.{field} must be in [0, 1), got {loss_config[field]}")
    warmup = round(loss_config.warmup_fraction * total_steps)
    rampup = round(loss_config.cps_rampup_fraction * total_steps)

    def schedule(step):
        after = jnp.maximum(step - warmup, 0)
        return jnp.where(step >= warmup, weight * sigmoid_rampup(after, rampup), 0.0)

    return schedule


def combine_cps(cps_l, cps_u, n_l: int, n_u: int, reduction: str) -> jax.Array:
    """Labeled and unlabeled cross terms (None = not applied) -> one term, as `reduction` says."""
    parts = [(v, n) for v, n in ((cps_l, n_l), (cps_u, n_u)) if v is not None]
    if reduction == "mean":
        return sum(v * n for v, n in parts) / sum(n for _, n in parts)
    if reduction == "sum":
        return sum(v for v, _ in parts)
    raise ValueError(f"config.loss.cps_reduction must be one of {REDUCTIONS}, got {reduction!r}")


def initial_extra(config, num_classes: int) -> dict:
    """The train state's `extra`: a running class prior per net for pseudo.balance="align"."""
    options = pseudo_labels.Options.from_config(config.pseudo)
    if options.balance != "align":
        return {}
    return {"prior": {net: pseudo_labels.initial_prior(num_classes) for net in OTHER}}


def _one_of(loss_config, field: str, allowed) -> str:
    if loss_config[field] not in allowed:
        raise ValueError(f"config.loss.{field} must be one of {allowed}, got {loss_config[field]!r}")
    return loss_config[field]


@dataclasses.dataclass(frozen=True)
class CrossTerm:
    kind: str
    options: pseudo_labels.Options
    cps_on: str
    reduction: str
    supervised: Callable
    weight: Callable  # step -> λ

    @classmethod
    def from_config(cls, config) -> "CrossTerm":
        loss_config = config.loss
        return cls(
            kind=_one_of(loss_config, "consistency", CONSISTENCIES),
            options=pseudo_labels.Options.from_config(config.pseudo),
            cps_on=_one_of(loss_config, "cps_on", CPS_ON),
            reduction=_one_of(loss_config, "cps_reduction", REDUCTIONS),
            supervised=supervised_loss_fn(loss_config),
            weight=cps_weight_schedule(loss_config, config.total_steps),
        )

    def targets(self, logits: dict, extra: dict, classes=None) -> dict:
        """{net: what the other net learns from `logits[net]`}: pseudo labels or probabilities.
        `classes` [N, C]: the images' image-level labels, used with pseudo.class_mask."""
        if self.kind == "cpc":
            return {net: _probabilities(x) for net, x in logits.items()}
        prior = extra.get("prior", {})
        classes = classes if self.options.class_mask else None
        return {
            net: pseudo_labels.select(x, self.options, prior.get(net), classes)
            for net, x in logits.items()
        }

    def mixed_targets(self, sources: dict, masks, extra: dict, classes=(None, None)) -> dict:
        """Targets for mixed images, from each net's logits on the two source batches
        ({net: [logits_0, logits_1]}), mixed with the images' boxes. `classes`: the two batches'
        image-level labels, used with pseudo.class_mask (each source masked by its own)."""
        if self.kind == "cpc":
            return {
                net: cutmix.mix(_probabilities(x0), _probabilities(x1), masks)
                for net, (x0, x1) in sources.items()
            }
        if self.options.class_mask:
            sources = {
                net: [_lowest_where_absent(x, c) for x, c in zip(xs, classes)]
                for net, xs in sources.items()
            }
        return self.targets({net: cutmix.mix(x0, x1, masks) for net, (x0, x1) in sources.items()}, extra)

    def __call__(self, logits: dict, targets: dict) -> jax.Array:
        """Σ over the two nets of a net's loss against the other net's targets."""
        if self.kind == "cpc":
            return sum(losses.probability_mse(logits[net], targets[OTHER[net]]) for net in logits)
        weighted = not self.options.is_plain
        return sum(
            losses.cross_entropy(
                logits[net],
                targets[OTHER[net]].labels,
                targets[OTHER[net]].weight if weighted else None,
            )
            for net in logits
        )

    def total(self, labeled: dict, batch: dict, cps_l, cps_u, step):
        """(L, metrics): both nets' supervised losses + λ(step) · the cross term on the images
        of `cps_on`."""
        cps_l = cps_l if self.cps_on != "unlabeled" else None
        cps_u = cps_u if self.cps_on != "labeled" else None
        n_l, n_u = batch["image_l"].shape[0], batch["image_u"].shape[0]
        cross = combine_cps(cps_l, cps_u, n_l, n_u, self.reduction)
        sup_left = self.supervised(labeled["left"], batch["mask_l"])
        sup_right = self.supervised(labeled["right"], batch["mask_l"])
        weight = self.weight(step)
        loss = sup_left + sup_right + weight * cross
        metrics = dict(loss=loss, sup_left=sup_left, sup_right=sup_right, cps=cross)
        metrics.update({k: v for k, v in (("cps_l", cps_l), ("cps_u", cps_u)) if v is not None})
        metrics["cps_weight"] = weight
        return loss, metrics

    def follow_prior(self, extra: dict, labels, predicted: dict) -> dict:
        """`extra` with each net's running class prior moved towards this step's shares."""
        if "prior" not in extra:
            return extra
        prior = extra["prior"]
        momentum = self.options.align_momentum
        return dict(
            extra,
            prior={
                net: pseudo_labels.update_prior(prior[net], labels, predicted[net], momentum)
                for net in prior
            },
        )

    def shown(self, targets: dict) -> list:
        """The unlabeled targets as pseudo labels, for the diagnostics."""
        if self.kind == "cpc":
            return [pseudo_labels.from_probabilities(targets[net]) for net in OTHER]
        return [targets[net] for net in OTHER]


def _lowest_where_absent(logits, classes):
    logits = losses.at_least_f32(logits)
    return pseudo_labels.class_masked(logits, classes, jnp.finfo(logits.dtype).min)


def _probabilities(logits):
    return jax.lax.stop_gradient(jax.nn.softmax(losses.at_least_f32(logits), axis=-1))
