"""What a training method is, and the registry of methods.

A Method names the nets it keeps in the train state, which of them the optimizer trains (the
others follow a hook, as an EMA teacher), the data streams it reads, and builds its loss from the
config. Everything else (state, gradient, update, diagnostics, loop) is generic:
cps_jax/train_step.py and cps_jax/trainer.py read these fields and nothing else of a method.

A loss is a pure function

    loss(params, stats, frozen, extra, batch, draws, step) -> (scalar, Aux)

  params  {trained net: params}, the tree differentiated;
  stats   {net: BatchNorm statistics} of every net;
  frozen  {untrained net: params} (a teacher's), no gradient;
  extra   method state beside the nets (train state's `extra`);
  batch   {image_l, mask_l, image_u, ...}: the streams the method asked for (`Method.streams`);
  draws   what `Method.draws` drew for this step (e.g. CutMix boxes), or None;
  step    the step count, for schedules.
"""

import dataclasses
from typing import Any, Callable, NamedTuple

# Streams of the input pipeline (cps_jax/input_pipeline.py): "l" pixel-labeled (image_l, mask_l);
# "u", "u1" batches without pixel labels, shuffled independently (image_u, image_u1, with their
# hidden masks mask_u, mask_u1); "w" images with image-level labels. Each stream s also gives
# classes_s (image-level labels) and pixel_s (which images are pixel-labeled).
STREAMS = ("l", "u", "u1", "w")


class Aux(NamedTuple):
    """What a loss returns beside its value."""

    metrics: dict  # scalars to log
    batch_stats: dict  # {net: new BatchNorm statistics}, every net of the state
    extra: dict  # the new method state
    pseudo: list  # the unlabeled targets of the step (pseudo_labels.Pseudo), for the diagnostics


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    # Every net of the train state, in order; the first is the one a run's result is read from.
    nets: tuple[str, ...]
    # The nets the optimizer trains (each with its own optimizer state).
    trained: tuple[str, ...]
    streams: tuple[str, ...]
    # config -> loss (module docstring); `tools` are the nets as functions (methods.nets.NetTools).
    make_loss: Callable[[Any, Any], Callable]
    # Nets that start as a copy of another ({copy: original}) instead of their own initialisation.
    copies: dict = dataclasses.field(default_factory=dict)
    # config -> ((nets after the optimizer update, step) -> nets), e.g. an EMA teacher; None: none.
    after_update: Callable | None = None
    # (config, batch, key) -> draws for the loss (random boxes, a key for a strong view); None: none.
    draws: Callable | None = None
    # (config, num_classes) -> the initial `extra` of the train state.
    initial_extra: Callable = lambda config, num_classes: {}
    # The stream whose hidden masks the loss's pseudo labels (Aux.pseudo) are scored against.
    pseudo_stream: str = "u"

    def __post_init__(self):
        unknown = [s for s in self.streams if s not in STREAMS]
        if unknown or "l" not in self.streams:
            raise ValueError(f"method {self.name!r}: streams must include 'l', from {STREAMS}")
        if not set(self.trained) <= set(self.nets) or not self.trained:
            raise ValueError(f"method {self.name!r}: trained nets must be some of {self.nets}")


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Adds `method` to the registry under its name (`config.method`)."""
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"config.method: {name!r} is not one of {names()}")
    return _REGISTRY[name]
