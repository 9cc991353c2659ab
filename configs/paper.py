r"""The paper's settings (the reference code's hyper-parameters) for PASCAL VOC 2012 aug and
Cityscapes; `configs/voc.py` and `configs/cityscapes.py` call this with their data set.

Where the paper and the reference code differ, these configs follow the code:
  - BatchNorm running variance updated with the unbiased batch variance, as PyTorch does
    (`model.bn_running_var="unbiased"`);
  - the classifier bias starts from PyTorch's default init, uniform +-1/sqrt(fan_in)
    (`model.classifier_bias_init="torch"`);
  - with CutMix, CPS on the mixed unlabeled images only (`loss.cps_on="unlabeled"`; the paper
    also applies it to the labeled ones). Without CutMix, CPS covers labeled and unlabeled images,
    as in both;
  - plain argmax pseudo labels at a constant CPS weight (the `reference` recipe of
    configs/common.py).

  cps-train --config configs/paper.py:dataset=voc,split=1/8,backbone=r50,cutmix=False --workdir runs/voc

Args (comma separated): dataset=voc|cityscapes, split=1/16|1/8|1/4|1/2, backbone=r50|r101,
cutmix=True|False, method=<overrides cps / cps_cutmix, e.g. supervised>.
Bring an ImageNet ResNet: --config.model.pretrained=resnet50_v1c.npz (see cps-convert-weights).
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")

# Per data set: what the reference trains with (REFERENCE: "Optimisation and data", "Losses").
DATASETS = {
    "voc": dict(
        name="voc_aug",
        crop=512,
        lr=0.01,
        steps=40_000,
        weight=1.5,
        weight_cutmix=1.0,
        supervised="ce",
    ),
    "cityscapes": dict(
        name="cityscapes",
        crop=800,
        lr=0.02,
        steps=44_500,
        weight=6.0,
        weight_cutmix=5.0,
        supervised="ohem",
    ),
}
BACKBONES = {"r50": "resnet50", "r101": "resnet101"}


CONFIG_FILE = "configs/paper.py"  # names this file in errors
# The `:arg` args and their defaults; method "": cps, or cps_cutmix with cutmix=True.
ARGS = {"dataset": "voc", "split": "1/8", "backbone": "r50", "cutmix": False, "method": ""}


def get_config(arg: str | None = None):
    return from_arg(arg, CONFIG_FILE)


def from_arg(arg: str | None, config_file: str):
    """The config of `arg` (ARGS); errors name `config_file`, the file the user gave."""
    args = common.parse_arg(arg, ARGS, config_file)
    dataset, backbone = args["dataset"], args["backbone"]
    if dataset not in DATASETS:
        raise ValueError(
            f"{config_file}: arg dataset: expected one of {sorted(DATASETS)}, got {dataset!r}"
        )
    if backbone not in BACKBONES:
        raise ValueError(f"{config_file}: arg backbone: expected r50 or r101, got {backbone!r}")
    use_cutmix = args["cutmix"]
    spec = DATASETS[dataset]

    config = common.base_config()
    # The reference code's targets: plain argmax pseudo labels at a constant λ.
    common.apply_recipe(config, "reference", config_file)
    config.method = args["method"] or ("cps_cutmix" if use_cutmix else "cps")
    config.data.name = spec["name"]
    config.data.labeled_fraction = args["split"]
    config.data.crop_size = (spec["crop"], spec["crop"])
    config.data.scales = (0.5, 0.75, 1.0, 1.5, 1.75, 2.0)
    config.data.worker_threads = 8
    config.batch_size_labeled = config.batch_size_unlabeled = 8
    config.eval_batch_size = 8
    config.total_steps = spec["steps"]

    config.model.backbone = BACKBONES[backbone]
    config.model.stem = "deep"
    config.model.output_stride = 16
    config.model.width = 64
    config.model.aspp_channels = 256
    config.model.low_level_channels = 48
    config.model.decoder_channels = 256
    config.model.bn_running_var = "unbiased"  # PyTorch's running variance
    config.model.classifier_bias_init = "torch"  # PyTorch's default Conv2d bias init

    config.loss.supervised = spec["supervised"]
    config.loss.cps_weight = spec["weight_cutmix"] if use_cutmix else spec["weight"]
    if use_cutmix:  # the reference code: CPS on the mixed unlabeled images only
        config.loss.cps_on = "unlabeled"
    config.optim.lr = spec["lr"]  # for the global 8 + 8 batch; lr_scaling=linear follows overrides
    config.optim.lr_scaling = "linear"
    config.optim.base_batch = 8

    # The reference evaluates with crop-sized sliding windows, stride ceil(2/3 window), one scale.
    config.eval.mode = "sliding"
    config.eval.window = config.data.crop_size
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    config.keep_checkpoints = 3
    return config
