r"""GTA5 -> Cityscapes: GTA5 (24,966 rendered frames, labeled) as the source, Cityscapes train
(2,975, unlabeled) as the target, Cityscapes val (500) as the score, 19 classes.

  cps-train --config configs/gta5_to_cityscapes.py:method=advent --workdir runs/g2c_advent \
      --config.model.pretrained=resnet101_v1c.npz
  cps-self-train --config configs/gta5_to_cityscapes.py --workdir runs/g2c_st --rounds 3

Args: method=source_only|minent|adaptseg|advent|dacs|cps, source=<folder: a translated GTA5
from cps-cyclegan-translate, instead of GTA5 itself>.

The adaptation papers' settings (ADVENT / AdaptSegNet): SGD lr 2.5e-4, momentum 0.9, weight
decay 5e-4, poly 0.9, batch 1 source + 1 target, 120k iterations; the discriminators Adam 1e-4
(config.adapt). The papers use DeepLabv2-R101 (source-only 36.6 mIoU); cps_jax has DeepLabv3+
R101 (output stride 8), which starts higher. Crops: 512 x 1024 of both domains (the papers resize
GTA5 to 1280 x 720 and Cityscapes to 1024 x 512 first).
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")

CONFIG_FILE = "configs/gta5_to_cityscapes.py"
METHODS = ("source_only", "minent", "adaptseg", "advent", "dacs", "cps")
ARGS = {"method": "source_only", "source": ""}


def get_config(arg: str | None = None):
    return from_args(common.parse_arg(arg, ARGS, CONFIG_FILE), "gta5", (), CONFIG_FILE)


def from_args(args: dict, source_name: str, classes: tuple, config_file: str):
    """The adaptation config from `source_name` to Cityscapes on `classes` (() all 19)."""
    if args["method"] not in METHODS:
        raise ValueError(f"{config_file}: method must be one of {METHODS}, got {args['method']!r}")
    config = common.base_config()
    common.apply_recipe(config, "reference", config_file)
    config.method = args["method"]
    config.data.name = "cityscapes"
    config.data.classes = classes
    source = config.data.source
    if args["source"]:
        source.name, source.folder = "image_folder", args["source"]
    else:
        source.name, source.classes = source_name, classes
    config.data.crop_size = (512, 1024)
    config.data.scales = (0.75, 1.0, 1.25, 1.5)
    config.data.worker_threads = 8
    config.batch_size_labeled = config.batch_size_unlabeled = 1
    config.total_steps = 120_000
    config.model.backbone = "resnet101"
    config.model.output_stride = 8
    config.model.width = 64
    config.model.aspp_channels = 256
    config.model.low_level_channels = 48
    config.model.decoder_channels = 256
    config.model.bn_running_var = "unbiased"
    config.optim.name, config.optim.lr = "sgd", 2.5e-4
    config.optim.momentum, config.optim.weight_decay = 0.9, 5e-4
    config.eval.mode, config.eval.window = "sliding", (512, 1024)
    config.eval_batch_size = 2
    config.eval_every, config.checkpoint_every = 5_000, 2_500
    return config
