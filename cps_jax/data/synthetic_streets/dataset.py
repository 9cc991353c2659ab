"""`synthetic_streets`: procedurally generated street scenes for semi-supervised segmentation.

The TFDS builder: one build per parameter set (Params), its examples rendered on demand by
`scene.render_scene` from seeds distinct across splits and data-set seeds, stored as PNG in
array_record files.
"""

import dataclasses
import multiprocessing
import os
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from cps_jax.data.png import png_bytes
from cps_jax.data.palette import NUM_CLASSES
from cps_jax.data.synthetic_streets.scene import DOMAINS, render_scene

DESCRIPTION = __doc__.split("\n\n")[0]
_SPLIT_CODES = {"train": 0, "validation": 1}


@dataclasses.dataclass(frozen=True)
class Params:
    """What a build is a function of: image size, examples per split, domain and seed."""

    height: int = 96
    width: int = 192
    num_train: int = 1000
    num_validation: int = 200
    domain: str = "photo"
    seed: int = 0

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(Params))


def config_name(height, width, num_train, num_validation, domain, seed) -> str:
    return f"{domain}_{height}x{width}_train{num_train}_val{num_validation}_seed{seed}"


def example_seed(seed: int, split: str, index: int) -> int:
    """The render seed of example `index` of `split`: distinct across splits and data-set seeds."""
    if seed < 0 or index < 0 or index >= 2**31:
        raise ValueError(f"need seed >= 0 and 0 <= index < 2**31, got {seed}, {index}")
    return int(seed) * 2**32 + _SPLIT_CODES[split] * 2**31 + int(index)


def _make_example(job):
    """(key, example) of job (split, index, seed, height, width, domain)."""
    split, index, seed, height, width, domain = job
    image, mask = render_scene(example_seed(seed, split, index), height, width, domain)
    classes = (np.bincount(mask.ravel(), minlength=NUM_CLASSES) > 0).astype(np.uint8)
    key = f"{split}_{index:06d}"
    return key, {"image": png_bytes(image), "mask": png_bytes(mask), "id": key, "classes": classes}


def _num_workers(num_examples: int) -> int:
    """Worker processes for rendering: $CPS_DATA_WORKERS, else up to 2 forked workers.

    Forking a process that has JAX loaded may deadlock, so then (and where fork is missing) the
    examples are rendered in this process (about 20 ms each at 96x192).
    """
    env = os.environ.get("CPS_DATA_WORKERS")
    if env:
        return max(1, int(env))
    if (
        num_examples < 64
        or "jax" in sys.modules
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


class SyntheticStreetsConfig(tfds.core.BuilderConfig):
    """A build's Params (keyword arguments height, width, num_train, num_validation, domain,
    seed; the others go to tfds.core.BuilderConfig), named after all of them."""

    def __init__(self, **kwargs):
        p = Params(**{k: kwargs.pop(k) for k in PARAM_NAMES if k in kwargs})
        name = kwargs.pop("name", None) or config_name(*dataclasses.astuple(p))
        kwargs.setdefault(
            "description",
            f"{p.height}x{p.width} {p.domain} scenes, {p.num_train} train / "
            f"{p.num_validation} validation, seed {p.seed}",
        )
        super().__init__(name=name, **kwargs)
        for k in PARAM_NAMES:
            value = getattr(p, k)
            setattr(self, k, value if k == "domain" else int(value))


class SyntheticStreets(tfds.core.GeneratorBasedBuilder):
    """Procedural street scenes with 13 Cityscapes classes (see the package docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [SyntheticStreetsConfig()]
    DEFAULT_CONFIG_NAME = BUILDER_CONFIGS[0].name
    # TFDS would locate this file through `importlib_resources` (not a dependency here) to look
    # for download checksums; there is nothing to download.
    code_path = epath.Path(os.path.abspath(__file__))

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "mask": tfds.features.Image(shape=(None, None, 1)),
                    "id": tfds.features.Text(),
                    "classes": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.uint8),
                }
            ),
            supervised_keys=("image", "mask"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        c = self.builder_config
        return {
            "train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation),
        }

    def _generate_examples(self, split, num_examples):
        c = self.builder_config
        jobs = [(split, i, c.seed, c.height, c.width, c.domain) for i in range(num_examples)]
        workers = _num_workers(num_examples)
        if workers <= 1:
            yield from map(_make_example, jobs)
            return
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_make_example, jobs, chunksize=16)


def builder(data_dir: str, **params) -> SyntheticStreets:
    """The builder of one parameter set (the fields of Params, by keyword); its config name
    encodes all of them."""
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        raise TypeError(f"builder() got unexpected keyword arguments {unknown}")
    config = SyntheticStreetsConfig(**params)
    if config.name in SyntheticStreets.builder_configs:  # a predefined config goes by its name
        config = config.name
    return SyntheticStreets(config=config, data_dir=os.fspath(data_dir), file_format="array_record")


def prepare(data_dir: str, **params) -> SyntheticStreets:
    """`builder(data_dir, **params)`, generated into `data_dir` unless it already is there.

    Read it with `prepare(...).as_data_source(split="train")[i]` -> {"image" uint8 [H, W, 3],
    "mask" uint8 [H, W, 1], "id" bytes, "classes" uint8 [NUM_CLASSES]}.
    """
    b = builder(data_dir, **params)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return b
