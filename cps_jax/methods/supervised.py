"""The supervised baseline: the left net on the labeled images only."""

from cps_jax.methods.base import Aux, Method, register
from cps_jax.methods.terms import supervised_loss_fn


def supervised_loss(tools, config):
    supervised = supervised_loss_fn(config.loss)

    def loss(params, stats, frozen, extra, batch, draws, step):
        (logits,), new_stats = tools.run(
            params["left"], stats["left"], [batch["image_l"]], train=True
        )
        value = supervised(logits, batch["mask_l"])
        return value, Aux(dict(loss=value, sup_left=value), {"left": new_stats}, extra, [])

    return loss


SUPERVISED = register(
    Method("supervised", nets=("left",), trained=("left",), streams=("l",), make_loss=supervised_loss)
)
