"""A method is one module and one registry entry: a toy method registered here, and listed
nowhere else, trains through the generic step, the input pipeline, the Trainer and evaluation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cps_jax import datasets, losses, methods
from cps_jax.trainer import Trainer
from configs import demo


def entropy_minimisation_loss(tools, config):
    """The labels, plus low prediction entropy on unlabeled images (Grandvalet & Bengio)."""

    def loss(params, stats, frozen, extra, batch, draws, step):
        (logits_l, logits_u), new_stats = tools.run(
            params["left"], stats["left"], [batch["image_l"], batch["image_u"]], train=True
        )
        sup = losses.cross_entropy(logits_l, batch["mask_l"])
        probs = jax.nn.softmax(logits_u)
        entropy = -jnp.mean(jnp.sum(probs * jnp.log(probs + 1e-12), -1))
        value = sup + 0.1 * entropy
        metrics = dict(loss=value, sup_left=sup, entropy=entropy)
        return value, methods.Aux(metrics, {"left": new_stats}, extra, [])

    return loss


TOY = methods.Method(
    "toy_entropy", nets=("left",), trained=("left",), streams=("l", "u"),
    make_loss=entropy_minimisation_loss,
)


@pytest.fixture
def toy():
    methods.register(TOY)
    yield TOY
    methods.unregister(TOY.name)


def test_a_registered_toy_method_trains_two_steps(toy, tmp_path):
    config = demo.get_config("runlocal")
    config.method = toy.name
    config.data.data_dir = str(tmp_path / "data")
    config.total_steps = config.eval_every = config.checkpoint_every = config.log_every = 2
    trainer = Trainer(config, str(tmp_path / "run"), data=datasets.load(config.data))
    # The pipeline builds the streams the method asked for, and no other.
    fields = ("image", "mask", "classes", "pixel")
    assert set(next(trainer.data_iterator())) == {f"{f}_{s}" for f in fields for s in ("l", "u")}
    results = trainer.train()
    assert list(results) == ["left"] and 0 <= results["left"]["miou"] <= 1
    assert int(trainer.state.step) == 2
    assert set(trainer.state.nets) == set(trainer.state.opt_states) == {"left"}
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    entropy = [line["train/entropy"] for line in logged if "train/entropy" in line]
    # A softmax over C classes has entropy in (0, log C].
    assert entropy and 0 < entropy[-1] <= np.log(config.model.get("num_classes", 19)) + 1e-6


def test_registry_names_its_methods_and_refuses_a_duplicate(toy):
    assert toy.name in methods.names()
    assert methods.get(toy.name) is toy
    with pytest.raises(ValueError, match="already registered"):
        methods.register(TOY)
    with pytest.raises(ValueError, match=r"config.method: 'nope' is not one of \("):
        methods.get("nope")


def test_a_method_must_read_the_labeled_stream_and_train_one_of_its_nets():
    with pytest.raises(ValueError, match="streams must include 'l'"):
        methods.Method("bad", nets=("left",), trained=("left",), streams=("u",), make_loss=None)
    with pytest.raises(ValueError, match="trained nets"):
        methods.Method("bad", nets=("left",), trained=("right",), streams=("l",), make_loss=None)
