r"""CPS on the embedded `synthetic_streets` data set, 1/8 of the labels, sized for a CPU.

Trains two ResNet-18 DeepLabv3+ nets (narrow) at 96x192 and evaluates them:

  cps-train --config configs/demo.py --workdir runs/demo
  cps-eval  --config configs/demo.py --workdir runs/demo

Variants through the `:arg` suffix (comma separated key=value), e.g. `configs/demo.py:split=1/16`,
and any field through `--config.<field>=<value>`, e.g. `--config.total_steps=200`.
`configs/demo.py:runlocal` is the tiny variant that the tests train.

The demo trains with the recommended pseudo-label recipe (`RECIPES["recommended"]`, chosen by
measurement: README, "When unlabeled images help"); `:recipe=reference` gives the reference
code's plain argmax targets at a constant λ.
"""

import ml_collections

from cps_jax import datasets

# How the cross term is scheduled and its targets chosen (config.loss / config.pseudo fields).
RECIPES = {
    "reference": {
        "loss.warmup_fraction": 0.0,
        "loss.cps_rampup_fraction": 0.0,
        "pseudo.threshold": 0.0,
        "pseudo.balance": "none",
        "strong.color_jitter": 0.0,
        "strong.grayscale_p": 0.0,
    },
    "recommended": {
        "loss.warmup_fraction": 0.25,
        "loss.cps_rampup_fraction": 0.25,
        "pseudo.threshold": 0.0,
        "pseudo.balance": "cbst",
        "pseudo.cbst_keep": 0.5,
        "strong.color_jitter": 0.8,
        "strong.grayscale_p": 0.2,
    },
}


def apply_recipe(config, name: str, source: str = "configs/demo.py") -> None:
    """Sets the fields of RECIPES[name] on `config`."""
    if name not in RECIPES:
        raise ValueError(f"{source}: recipe must be one of {sorted(RECIPES)}, got {name!r}")
    for path, value in RECIPES[name].items():
        section, field = path.split(".")
        config[section][field] = value


def parse_arg(arg: str | None) -> dict:
    """'split=1/8,runlocal' -> {'split': '1/8', 'runlocal': True}."""
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip() if value else True
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.method = "cps"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "synthetic_streets"
    config.data.data_dir = ""  # "" -> $CPS_DATA_DIR, else ./data
    config.data.height = 96
    config.data.width = 192
    config.data.num_train = 1000
    config.data.num_validation = 200
    config.data.domain = "photo"
    config.data.dataset_seed = 0  # seed of the generated scenes
    config.data.labeled_fraction = str(args.get("split", "1/8"))
    config.data.labeled_list = ""  # a file of example ids; overrides labeled_fraction
    config.data.partition_seed = 0
    # Train and evaluate on these classes only (names, in order; the rest become ignore, 255);
    # () keeps every class of the data set.
    config.data.classes = ()
    config.data.crop_size = (96, 96)
    config.data.scales = (0.75, 1.0, 1.25, 1.5)
    config.data.flip = True
    config.data.worker_threads = 2
    # data.name="image_folder", a folder of one's own (configs/folder.py): the folder, and which
    # share of its images/ is held out for validation (seed val_seed) when it has no val/.
    config.data.update(datasets.IMAGE_FOLDER_DEFAULTS)

    config.batch_size_labeled = 8  # global, over all devices
    config.batch_size_unlabeled = 8
    config.total_steps = 1000
    config.eval_batch_size = 20

    # How evaluation and cps-predict run a net (cps_jax/inference.py). The reference evaluates
    # with mode="sliding", window = crop size, stride = ceil(2/3 window), one scale, no flip.
    config.eval = ml_collections.ConfigDict()
    config.eval.mode = "whole"  # or "sliding"
    config.eval.window = ()  # (h, w); () -> config.data.crop_size
    config.eval.stride = ()  # (h, w); () -> ceil(2/3 window)
    config.eval.scales = (1.0,)  # multi-scale: e.g. (0.75, 1.0, 1.25); logits averaged
    config.eval.flip = False  # also predict the mirrored image; logits averaged
    config.eval.pad_multiple = 1  # batch canvases rounded up to this: fewer compiled shapes

    config.model = ml_collections.ConfigDict()
    config.model.backbone = "resnet18"
    config.model.stem = "deep"
    config.model.output_stride = 16
    config.model.width = 16
    config.model.aspp_channels = 64
    config.model.low_level_channels = 24
    config.model.decoder_channels = 64
    config.model.dtype = "float32"  # compute dtype; "bfloat16" keeps params and losses in f32
    # "auto": patches + matmul on the CPU (fast there), XLA's native convolution on GPU/TPU;
    # or "xla" / "patches" everywhere (cps_jax/models/conv.py; benchmarks/conv_impl.py).
    config.model.conv_impl = "auto"
    config.model.pretrained = ""  # backbone weights: an .npz from cps-convert-weights
    config.model.bn_running_var = "biased"  # BN running var: "biased" (flax) | "unbiased" (PyTorch)
    config.model.classifier_bias_init = "zeros"  # or "torch": uniform +-1/sqrt(fan_in), as PyTorch

    config.loss = ml_collections.ConfigDict()
    config.loss.supervised = "ce"  # or "ohem"
    config.loss.ohem_threshold = 0.7
    config.loss.ohem_min_kept = 50_000
    config.loss.cps_weight = 1.5
    config.loss.cps_reduction = (
        "mean"  # "mean": the reference code; "sum": the paper's L_cps^l + L_cps^u
    )
    config.loss.joint_bn = False  # True: labeled and unlabeled images share one forward call
    config.loss.consistency = "cps"  # "cpc": the other net's probabilities (CCT-style ablation)
    config.loss.cps_on = "both"  # "both" (paper), "labeled", "unlabeled" (the code, with CutMix)
    config.loss.cutmix_pseudo_bn = "train"  # BN of the no-gradient CutMix passes: "train" | "eval"
    # λ schedule, in fractions of total_steps: 0 for the first warmup_fraction (supervised only),
    # then a sigmoid ramp-up to cps_weight over cps_rampup_fraction (0, 0: the reference's constant).
    config.loss.warmup_fraction = 0.0
    config.loss.cps_rampup_fraction = 0.0
    config.loss.consistency_weight = 1.0  # mean_teacher / cutmix_seg
    config.loss.consistency_rampup_steps = 200
    config.loss.ema_decay = 0.99

    # How a net's prediction becomes the other's target (cps_jax/pseudo_labels.py); all off: the
    # reference's plain argmax. threshold: keep pixels with confidence >= it; balance: "none",
    # "cbst" (per class, keep the cbst_keep most confident share of its pixels) or "align"
    # (probabilities aligned to the labeled class shares before the argmax).
    config.pseudo = ml_collections.ConfigDict()
    config.pseudo.threshold = 0.0
    config.pseudo.balance = "none"
    config.pseudo.cbst_keep = 0.5
    config.pseudo.align_momentum = 0.99

    # Colour perturbation of the mixed images the nets learn on (CutMix methods; cps_jax/augment.py):
    # brightness, contrast, saturation factors in U(1 - color_jitter, 1 + color_jitter), greyscale
    # with probability grayscale_p. 0, 0: off, as the reference.
    config.strong = ml_collections.ConfigDict()
    config.strong.color_jitter = 0.0
    config.strong.grayscale_p = 0.0

    config.cutmix = ml_collections.ConfigDict()
    config.cutmix.num_boxes = 3
    config.cutmix.area_range = (0.25, 0.5)
    config.cutmix.random_aspect_ratio = True

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"  # the reference; or "adamw" (cps_jax/optim.py)
    config.optim.lr = 0.02
    config.optim.momentum = 0.9
    config.optim.weight_decay = 1e-4
    config.optim.poly_power = 0.9
    config.optim.warmup_steps = 0
    # "none": lr is for the global batch as configured; "linear": lr is for base_batch labeled
    # images and the code scales it by batch_size_labeled / base_batch (overrides follow).
    config.optim.lr_scaling = "none"
    config.optim.base_batch = 8  # the reference's 8 labeled (+ 8 unlabeled) images per step

    # Execution only (same numbers): run the CPS pair as one vmapped program; recompute the
    # forward in the backward pass ("full" | "dots") to save activation memory.
    config.fuse_pair = False
    config.remat = "none"

    # A loss above it stops the run (as a non-finite one does); 0: 1e6 x the first step's loss.
    config.max_loss = 0.0

    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 250
    config.keep_checkpoints = 2  # the latest N, plus the best by mIoU
    config.num_visualize = 4

    apply_recipe(config, str(args.get("recipe", "recommended")))

    if args.get("runlocal"):
        # Tiny and fast: the tests train this one.
        config.data.height, config.data.width = 32, 64
        config.data.num_train, config.data.num_validation = 32, 8
        config.data.crop_size = (32, 32)
        config.data.worker_threads = 0
        config.model.width = 8
        config.model.aspp_channels = config.model.decoder_channels = 16
        config.model.low_level_channels = 8
        config.batch_size_labeled = config.batch_size_unlabeled = 2
        config.eval_batch_size = 3
        config.total_steps = 4
        config.log_every = 1
        config.eval_every = config.checkpoint_every = 2
        config.num_visualize = 2
    return config
