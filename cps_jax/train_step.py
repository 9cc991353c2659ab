"""The train step of every method: one pure function (state, batch, rng) -> (state, metrics),
jitted by the caller. The method (cps_jax/methods) gives the loss, which nets it trains and an
optional hook after the update; this module differentiates, updates and measures.

batch: image_l [N,H,W,3] f32, mask_l [N,H,W] i32, and the unlabeled streams the method asks for
(image_u, image_u1 [M,H,W,3]); optionally their hidden masks mask_u (mask_u1), which no loss
reads: with them, metrics["pseudo"] holds the pseudo-label diagnostic counts
(pseudo_labels.diagnostic_counts).
"""

import jax
import jax.numpy as jnp
import optax

from cps_jax import augment, methods, pseudo_labels
from cps_jax.methods.nets import NetTools
from cps_jax.state import TrainState


def unlabeled_truth(batch, masks, stream: str = "u"):
    """The hidden masks of the images the pseudo labels are for: stream `stream`'s, mixed alike
    with the CutMix boxes `masks` (with "u1")."""
    if f"mask_{stream}" not in batch:
        return None
    if masks is None:
        return batch[f"mask_{stream}"]
    return jnp.where(masks > 0.5, batch["mask_u1"], batch["mask_u"])


def make_train_step(graphdef, config, tx: optax.GradientTransformation, lr_schedule):
    """step(state, batch, rng) -> (state, metrics) for `config.method`; `rng` is raw key data."""
    method = methods.get(config.method)
    loss_fn = method.make_loss(NetTools.from_config(graphdef, config), config)
    hook = method.after_update(config) if method.after_update else None

    def step(state: TrainState, batch, rng):
        params = {name: state.nets[name]["params"] for name in method.trained}
        frozen = {n: net["params"] for n, net in state.nets.items() if n not in method.trained}
        stats = {name: net["batch_stats"] for name, net in state.nets.items()}
        key = jax.random.wrap_key_data(rng)
        if config.strong.labeled:
            image_l = augment.strong_view(batch["image_l"], jax.random.fold_in(key, 2), config.strong)
            batch = dict(batch, image_l=image_l)
        draws = method.draws(config, batch, key) if method.draws else None
        grads, aux = jax.grad(loss_fn, has_aux=True)(
            params, stats, frozen, state.extra, batch, draws, state.step
        )
        nets, opt_states = {}, {}
        for name, net in state.nets.items():
            new_params = net["params"]
            if name in method.trained:
                updates, opt_states[name] = tx.update(
                    grads[name], state.opt_states[name], net["params"]
                )
                new_params = optax.apply_updates(net["params"], updates)
            nets[name] = {"params": new_params, "batch_stats": aux.batch_stats[name]}
        if hook is not None:
            nets = hook(nets, state.step)
        new_state = TrainState(
            step=state.step + 1, nets=nets, opt_states=opt_states, extra=aux.extra
        )
        metrics = dict(aux.metrics, lr=lr_schedule(state.step), grad_norm=optax.tree.norm(grads))
        truth = unlabeled_truth(batch, (draws or {}).get("masks"), method.pseudo_stream)
        if aux.pseudo and truth is not None:
            num_classes = next(iter(params.values()))["classifier"]["kernel"].shape[-1]
            # Sums, added up between log steps on the device: no host sync per step.
            metrics["pseudo"] = pseudo_labels.diagnostic_counts(aux.pseudo, truth, num_classes)
        return new_state, metrics

    return step
