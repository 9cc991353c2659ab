"""ImageNet-pretrained ResNet backbones from PyTorch checkpoints.

Users bring the weight files; nothing is downloaded. A checkpoint in one of two layouts is
converted into flat arrays named after the cps_jax state trees (``backbone/layer1/block0/conv1/
kernel``, ``backbone/bn1/mean``, ...) and saved as ``.npz``, which loads without PyTorch:

  torchvision  7x7 stem: ``conv1``, ``bn1``; blocks ``layer1.0.conv1`` ... ``downsample.0/1``.
  v1c          deep stem as in the CPS reference: ``conv1.0/1/3/4/6`` (3x3 conv, BN, ReLU, 3x3,
               BN, ReLU, 3x3) then ``bn1``; or the mmcv naming ``stem.0/1/3/4/6/7``.

``fc.*`` and ``num_batches_tracked`` are ignored. PyTorch conv weights OIHW become flax HWIO;
BatchNorm ``weight/bias/running_mean/running_var`` become ``scale/bias`` (params) and
``mean/var`` (batch_stats). A state_dict may sit under ``state_dict`` / ``model`` and carry
``module.`` / ``backbone.`` prefixes (with ``backbone.``, the other tensors, a head, are ignored).

  cps-convert-weights --input resnet50_v1c.pth --output resnet50_v1c.npz [--layout auto]

``model.pretrained=PATH`` (an .npz from the converter, a checkpoint directly when torch is
installed, or a ``cps-export`` file whose left net's backbone is taken) puts the backbone into both
nets of the pair; see ``replace_backbone``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from cps_jax import export
from cps_jax.models.resnet import BLOCKS, ResNet

__all__ = [
    "LAYOUTS",
    "convert_state_dict",
    "read_torch_checkpoint",
    "load_weights",
    "backbone_of_export",
    "load_for_model",
    "infer_architecture",
    "expected_shapes",
    "check_fits",
    "replace_backbone",
    "main",
]

LAYOUTS = ("auto", "torchvision", "v1c")
PREFIX = "backbone"

# PyTorch stem module -> cps_jax module, per naming. In the reference's v1c, `bn1` is the BN of
# the third stem conv, so it maps to bn3 (torchvision's `bn1` maps to bn1).
_STEMS = {
    "torchvision": {"conv1": "conv1", "bn1": "bn1"},
    "v1c": {
        "conv1.0": "conv1",
        "conv1.1": "bn1",
        "conv1.3": "conv2",
        "conv1.4": "bn2",
        "conv1.6": "conv3",
        "bn1": "bn3",
    },
    "v1c-mmcv": {
        "stem.0": "conv1",
        "stem.1": "bn1",
        "stem.3": "conv2",
        "stem.4": "bn2",
        "stem.6": "conv3",
        "stem.7": "bn3",
    },
}
_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(conv\d|bn\d|downsample\.[01])")
_BLOCK_MODULES = {"downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
_BN_TENSORS = {"running_mean": "mean", "running_var": "var", "bias": "bias", "weight": "scale"}
_WRAPPERS = ("state_dict", "model")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "shape") for v in obj.values())


def unwrap_state_dict(obj, source: str) -> Mapping:
    """The name -> tensor mapping itself, from a checkpoint that may nest it under a wrapper key."""
    while not _is_state_dict(obj):
        key = next((k for k in _WRAPPERS if isinstance(obj, Mapping) and k in obj), None)
        if key is None:
            found = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(
                f"{source}: expected a state_dict (names -> tensors), or a dict holding one under "
                f"{' or '.join(map(repr, _WRAPPERS))}; found {found}"
            )
        obj = obj[key]
    return obj


def _strip_prefixes(state_dict: Mapping) -> tuple[dict, list[str]]:
    """Drops `module.` (DataParallel); keeps only `backbone.*` when present. -> (dict, ignored)."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not any(k.startswith(PREFIX + ".") for k in sd):
        return sd, []
    ignored = sorted(k for k in sd if not k.startswith(PREFIX + "."))
    return {k.removeprefix(PREFIX + "."): v for k, v in sd.items() if k not in ignored}, ignored


def _stem_naming(names, layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if "stem.0.weight" in names:
        return "v1c-mmcv" if layout in ("auto", "v1c") else "torchvision"
    if layout == "auto":
        return "v1c" if "conv1.0.weight" in names else "torchvision"
    return layout


def _target(name: str, value, stem: dict) -> str | None:
    """The cps_jax key of one PyTorch tensor name; None if it is not part of a ResNet backbone."""
    module, _, tensor = name.rpartition(".")
    if module in stem:
        path = stem[module]
    elif m := _BLOCK.fullmatch(module):
        layer, block, sub = m.groups()
        path = f"layer{layer}/block{block}/{_BLOCK_MODULES.get(sub, sub)}"
    else:
        return None
    is_conv = "conv" in path and np.ndim(value) == 4
    if is_conv and tensor == "weight":
        return f"{PREFIX}/{path}/kernel"
    if not is_conv and np.ndim(value) == 1 and tensor in _BN_TENSORS:
        return f"{PREFIX}/{path}/{_BN_TENSORS[tensor]}"
    return None


def convert_state_dict(
    state_dict: Mapping, layout: str = "auto", source: str = "checkpoint"
) -> tuple[dict[str, np.ndarray], list[str]]:
    """PyTorch ResNet state_dict (numpy arrays) -> (flat cps_jax arrays in float32, ignored names).

    Raises ValueError naming every tensor that belongs to no ResNet backbone of ``layout``.
    """
    sd, ignored = _strip_prefixes(unwrap_state_dict(state_dict, source))
    naming = _stem_naming(sd, layout)
    stem = _STEMS[naming]
    out, unknown = {}, []
    for name, value in sd.items():
        if name.endswith("num_batches_tracked") or name.startswith("fc."):
            ignored.append(name)
            continue
        key = _target(name, value, stem)
        if key is None:
            unknown.append(f"{name} {tuple(np.shape(value))}")
            continue
        value = np.asarray(value, np.float32)
        out[key] = value.transpose(2, 3, 1, 0) if key.endswith("/kernel") else value  # OIHW->HWIO
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} tensor(s) are not part of a {naming}-layout ResNet "
            f"backbone (layout={layout!r}; torchvision: conv1/bn1 stem, v1c: conv1.0 ... or stem.0 "
            "... deep stem):\n  " + "\n  ".join(unknown)
        )
    return out, ignored


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
    """A `.pth` state_dict as float32 numpy arrays (tensors only: torch.load(weights_only=True))."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install 'cps_jax[torch]'); "
            "or convert it to .npz with cps-convert-weights where torch is installed"
        ) from error
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike: say which file
        raise ValueError(f"{path}: not a PyTorch checkpoint torch.load can read: {error}") from None
    sd = unwrap_state_dict(obj, path)
    return {k: v.detach().to(torch.float32).numpy() for k, v in sd.items()}


def backbone_of_export(path: str) -> dict[str, np.ndarray]:
    """Flat backbone arrays of the left net of a `cps-export` file (`.cpsj`): a backbone that
    cps_jax trained itself, e.g. on a labeled source domain, to start other runs from."""
    net = export.load(path, flag="").nets.get("left")
    if net is None:
        raise ValueError(f"{path}: has no left net (export it with --net left or both)")
    flat = _flat_backbone(net["params"], net["batch_stats"])
    return {k: np.asarray(v) for k, v in flat.items()}


def whole_net_of_export(path: str, params: dict, batch_stats: dict) -> tuple[dict, dict]:
    """The left net of a `cps-export` file, every array (heads included), checked against the
    shapes of (`params`, `batch_stats`), a net of the config being trained."""
    net = export.load(path, flag="model.pretrained").nets.get("left")
    if net is None:
        raise ValueError(f"model.pretrained {path}: has no left net (export it with --net left or both)")
    want = {**_flat({"params": params}), **_flat({"batch_stats": batch_stats})}
    have = {**_flat({"params": net["params"]}), **_flat({"batch_stats": net["batch_stats"]})}
    wrong = sorted(k for k in want if k not in have or tuple(np.shape(have[k])) != tuple(np.shape(want[k])))
    if wrong or set(have) - set(want):
        raise ValueError(
            f"model.pretrained {path} with model.pretrained_heads: its net does not fit this "
            f"config's (first difference: {(wrong or sorted(set(have) - set(want)))[0]}); the "
            "architecture and the number of classes must be the same"
        )
    cast = lambda ref, new: jax.tree.map(lambda r, n: jnp.asarray(n, r.dtype), ref, new)  # noqa: E731
    return cast(params, net["params"]), cast(batch_stats, net["batch_stats"])


def load_weights(path: str, layout: str = "auto") -> dict[str, np.ndarray]:
    """Flat backbone arrays from a converted `.npz`, a `cps-export` file (`.cpsj`), or a PyTorch
    checkpoint (needs torch)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weight file: {path}")
    if path.endswith(".cpsj"):
        return backbone_of_export(path)
    if path.endswith(".npz"):
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except Exception as error:  # zip, pickle and format errors alike: say which file
            raise ValueError(f"{path}: not an .npz of arrays: {error}") from None
    return convert_state_dict(read_torch_checkpoint(path), layout, source=path)[0]


def load_for_model(model_config) -> dict[str, np.ndarray] | None:
    """The weights named by ``model.pretrained`` (None when it is unset or "")."""
    path = model_config.pretrained
    if not path:
        return None
    try:
        return load_weights(path)
    except (OSError, ValueError, ImportError) as error:
        raise type(error)(f"model.pretrained: {error}") from error


def infer_architecture(shapes: Mapping[str, tuple]) -> tuple[int, str, int]:
    """(depth, stem, width) of flat backbone arrays; ValueError if no cps_jax ResNet has them."""
    blocks = tuple(
        len({k.split("/")[2] for k in shapes if k.startswith(f"{PREFIX}/layer{i}/")})
        for i in range(1, 5)
    )
    kind = "bottleneck" if f"{PREFIX}/layer1/block0/conv3/kernel" in shapes else "basic"
    depth = next((d for d, spec in BLOCKS.items() if spec == (kind, blocks)), None)
    stem_kernel = shapes.get(f"{PREFIX}/conv1/kernel")
    if depth is None or stem_kernel is None:
        raise ValueError(
            f"not a ResNet-{'/'.join(map(str, BLOCKS))} backbone: {kind} blocks per stage "
            f"{blocks}, stem conv1 {'present' if stem_kernel is not None else 'missing'}"
        )
    stem = "deep" if f"{PREFIX}/conv2/kernel" in shapes else "torchvision"
    return depth, stem, int(stem_kernel[-1])


def describe(shapes: Mapping[str, tuple]) -> str:
    try:
        depth, stem, width = infer_architecture(shapes)
    except ValueError as error:
        return str(error)
    return f"ResNet-{depth}, {stem} stem, width {width}"


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree, sep="/")


def _flat_backbone(params: Mapping, batch_stats: Mapping) -> dict:
    """{"backbone/...": leaf} of a net's params and BN statistics: the converter's naming."""
    return {f"{PREFIX}/{k}": v for t in (params, batch_stats) for k, v in _flat(t[PREFIX]).items()}


def expected_shapes(depth: int, stem: str, width: int) -> dict[str, tuple]:
    """Flat {key: shape} of a cps_jax ResNet backbone (params and BN statistics), not allocated."""
    model = nnx.eval_shape(lambda: ResNet(depth, stem=stem, width=width, rngs=nnx.Rngs(0)))
    _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    flat = {**_flat(nnx.to_pure_dict(params)), **_flat(nnx.to_pure_dict(stats))}
    return {f"{PREFIX}/{k}": tuple(v.shape) for k, v in flat.items()}


def check_fits(weights: Mapping, expected: Mapping[str, tuple], source: str) -> None:
    """Raises ValueError naming the file and all missing, extra and mis-shaped keys, grouped."""
    got = {k: tuple(np.shape(v)) for k, v in weights.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    misshaped = sorted(k for k in set(got) & set(expected) if got[k] != tuple(expected[k]))
    if not (missing or extra or misshaped):
        return
    groups = [
        ("missing", [f"{k} {tuple(expected[k])}" for k in missing]),
        ("extra", [f"{k} {got[k]}" for k in extra]),
        ("mis-shaped", [f"{k}: file {got[k]}, model {tuple(expected[k])}" for k in misshaped]),
    ]
    lines = [f"{name} ({len(keys)}):\n    " + "\n    ".join(keys) for name, keys in groups if keys]
    raise ValueError(
        f"{source} does not fit the backbone (file: {describe(got)}; model: {describe(expected)})"
        ":\n  " + "\n  ".join(lines)
    )


def replace_backbone(params: dict, batch_stats: dict, weights: Mapping, source: str):
    """(params, batch_stats) with ``backbone`` taken from ``weights``; everything else unchanged.

    Works inside ``jit`` / ``eval_shape`` (the trees may hold tracers): shapes are static, the
    weights become constants of the traced program.
    """
    model = _flat_backbone(params, batch_stats)
    check_fits(weights, {k: tuple(v.shape) for k, v in model.items()}, source)

    def take(flat):
        new = {k: jnp.asarray(weights[f"{PREFIX}/{k}"], v.dtype) for k, v in flat.items()}
        return traverse_util.unflatten_dict(new, sep="/")

    return (
        {**params, PREFIX: take(_flat(params[PREFIX]))},
        {**batch_stats, PREFIX: take(_flat(batch_stats[PREFIX]))},
    )


def main(argv=None) -> None:
    """cps-convert-weights: a PyTorch ResNet checkpoint -> an .npz that cps_jax loads."""
    parser = argparse.ArgumentParser(
        prog="cps-convert-weights",
        description="Convert a PyTorch ResNet-18/34/50/101 checkpoint (torchvision or v1c layout) "
        "into an .npz for model.pretrained. Needs torch to read the checkpoint.",
    )
    parser.add_argument("--input", required=True, help="PyTorch checkpoint (.pth)")
    parser.add_argument("--output", required=True, help="the .npz to write")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="stem layout")
    args = parser.parse_args(argv)
    if not args.output.endswith(".npz"):
        parser.error(f"--output must end with .npz, got {args.output!r}")
    try:
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"--input: no such file: {args.input}")
        weights, ignored = convert_state_dict(
            read_torch_checkpoint(args.input), args.layout, source=args.input
        )
        shapes = {k: v.shape for k, v in weights.items()}
        check_fits(weights, expected_shapes(*infer_architecture(shapes)), args.input)
    except (OSError, ValueError, ImportError) as error:
        sys.exit(f"error: {error}")
    np.savez(args.output, **weights)
    size = sum(v.size for v in weights.values())
    print(f"{args.output}: {describe(shapes)}, {len(weights)} arrays, {size:,} values")
    if ignored:
        shown = ", ".join(ignored[:6]) + (
            f", ... ({len(ignored)} in all)" if len(ignored) > 6 else ""
        )
        print(f"ignored: {shown}")


if __name__ == "__main__":
    main()
