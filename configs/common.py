r"""What every config in configs/ shares: the `:arg` parser, the base config and the pseudo-label
recipes.

`base_config()` declares every field the code reads, with its default: the demo's setting
(`synthetic_streets` at 96x192, a narrow ResNet-18 DeepLabv3+ sized for a CPU) and the reference
code's training recipe. The other configs start from it and override; a field that is not here
cannot be set by `--config.<field>=<value>`, and a test (tests/test_configs_declared.py) fails if
the code reads one that is not declared.
"""

import difflib

import ml_collections

from cps_jax import datasets
from cps_jax.cyclegan import config as cyclegan_config

# How the cross term is scheduled and its targets chosen (config.loss / config.pseudo /
# config.strong fields). `reference`: all off, as base_config() has them.
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

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _typed(value: str, default, where: str):
    """`value` as the type of `default` (bool, int, float; anything else: str)."""
    if isinstance(default, bool):
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"{where}: expected True or False")
    for kind, name in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{where}: expected {name}") from None
    return value


def parse_arg(arg: str | None, defaults: dict, source: str) -> dict:
    """The args of a config file's `:arg` suffix on top of `defaults` (name -> default value).

    'split=1/16,runlocal' -> {**defaults, 'split': '1/16', 'runlocal': True}: items are comma
    separated key=value, a later one wins; each value is parsed as the type of its default (a bare
    key sets a bool to True). An unknown key or a value of the wrong type is a ValueError, one line
    naming `source` (the config file) and the arg.
    """
    args = dict(defaults)
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, has_value, value = (part.strip() for part in item.partition("="))
        if key not in defaults:
            close = difflib.get_close_matches(key, defaults, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"{source}:{item}: unknown arg {key!r} ({hint}expected one of "
                f"{', '.join(defaults)})"
            )
        if has_value:
            args[key] = _typed(value, defaults[key], f"{source}:{item}")
        elif isinstance(defaults[key], bool):
            args[key] = True
        else:
            raise ValueError(f"{source}:{item}: arg {key!r} needs a value ({key}=...)")
    return args


def apply_recipe(config, name: str, source: str) -> None:
    """Sets the fields of RECIPES[name] on `config`."""
    if name not in RECIPES:
        raise ValueError(f"{source}: recipe must be one of {sorted(RECIPES)}, got {name!r}")
    for path, value in RECIPES[name].items():
        section, field = path.split(".")
        config[section][field] = value


def base_config() -> ml_collections.ConfigDict:
    """Every field the code reads, with its default."""
    config = ml_collections.ConfigDict()
    config.method = "cps"  # train_step.METHODS
    config.seed = 0  # of the nets' init and the input order

    config.data = ml_collections.ConfigDict()
    config.data.name = "synthetic_streets"  # datasets.NAMES
    # The loaders' fields, with their defaults in datasets.DATA_DEFAULTS (which cps-prepare NAME
    # uses too): data_dir, manual_dir (cityscapes, voc_aug), classes (a subset of the classes to
    # train and evaluate on), and of `image_folder` (configs/folder.py) folder, val_fraction (the
    # share of images/ held out for validation when there is no val/) and val_seed.
    config.data.update(datasets.DATA_DEFAULTS)
    # synthetic_streets: the generated scenes.
    config.data.height = 96
    config.data.width = 192
    config.data.num_train = 1000
    config.data.num_validation = 200
    config.data.domain = "photo"  # synthetic_streets.DOMAINS
    config.data.dataset_seed = 0  # seed of the generated scenes
    config.data.labeled_fraction = "1/8"  # of the train split; the rest is unlabeled
    # Domain adaptation: a labeled source domain of the same classes (name "": none). With one,
    # the labeled stream is the source's train split and all of this train split is unlabeled;
    # validation stays this (the target's). Fields as config.data's loader fields.
    config.data.source = ml_collections.ConfigDict(datasets.source_defaults())
    config.data.labeled_list = ""  # a file of example ids; overrides labeled_fraction
    # Of the images without pixel labels, those with image-level labels (the classes present):
    # "" none, "rest" all of them, or a fraction of the train split (partitions.image_labeled).
    config.data.image_labeled_fraction = ""
    config.data.partition_seed = 0
    config.data.crop_size = (96, 96)
    config.data.scales = (0.75, 1.0, 1.25, 1.5)  # random rescaling before the crop
    config.data.flip = True
    config.data.worker_threads = 2  # 0: the input pipeline runs in the training thread

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
    config.model.backbone = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet101
    config.model.stem = "deep"  # "deep" (v1c, the reference) | "torchvision"
    config.model.output_stride = 16  # 8 | 16 | 32
    config.model.width = 16  # the stem's width (64 in the standard nets)
    config.model.aspp_channels = 64
    config.model.low_level_channels = 24
    config.model.decoder_channels = 64
    config.model.multi_grid = (1, 2, 4)  # dilation units of layer4's blocks
    config.model.aspp_rates = ()  # () -> (6, 12, 18) at output stride 16, scaled with it
    config.model.dtype = "float32"  # compute dtype; "bfloat16" keeps params and losses in f32
    # "auto": patches + matmul on the CPU (fast there), XLA's native convolution on GPU/TPU;
    # or "xla" / "patches" everywhere (cps_jax/models/conv.py; benchmarks/conv_impl.py).
    config.model.conv_impl = "auto"
    config.model.pretrained = ""  # backbone weights: an .npz from cps-convert-weights
    # With a cps-export file (.cpsj) as model.pretrained: every net starts as its left net whole,
    # heads included (fine-tuning a trained model; the class count must match).
    config.model.pretrained_heads = False
    config.model.bn_momentum = 0.9  # flax's running-average decay (PyTorch's momentum 0.1)
    config.model.bn_epsilon = 1e-5
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
    # BN of the no-gradient pseudo-label passes (CutMix; CPS with config.strong): "train" | "eval"
    config.loss.cutmix_pseudo_bn = "train"
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
    config.pseudo.class_mask = False  # targets only among the classes of the image-level labels

    # Colour perturbation of the unlabeled images the nets learn on, their targets coming from the
    # clean images (cps, and the mixed images of the CutMix methods; cps_jax/augment.py):
    # brightness, contrast, saturation factors in U(1 - color_jitter, 1 + color_jitter), greyscale
    # with probability grayscale_p. 0, 0: off, as the reference. labeled: perturb the labeled
    # images too, for every method (the control that tells the perturbation's own gain apart).
    config.strong = ml_collections.ConfigDict()
    config.strong.color_jitter = 0.0
    config.strong.grayscale_p = 0.0
    config.strong.labeled = False

    # Progressive cross training (method "pct", cps_jax/methods/pct.py), as the authors' code.
    config.pct = ml_collections.ConfigDict()
    config.pct.score_momentum = 0.99  # of the pseudo net's per-class counts (dynamic evaluation)
    config.pct.score_power = 8.0  # w_i = (min IoU over the image's classes) ** score_power
    config.pct.cls_skip = ()  # class indices left out of L_cls (VOC: (0,), its background)

    # Adaptation methods (cps_jax/methods/adaptation.py, adversarial.py): the papers' settings.
    config.adapt = ml_collections.ConfigDict()
    config.adapt.entropy_weight = 1e-3  # minent: λ_ent
    config.adapt.adversarial_weight = 1e-3  # adaptseg / advent: λ_adv
    config.adapt.gan = "bce"  # or "ls" (least squares)
    config.adapt.disc_width = 64  # the discriminator's first width (64-128-256-512-1)
    config.adapt.disc_lr = 1e-4  # its Adam lr (β 0.9, 0.99), poly decay
    config.adapt.confidence = 0.968  # dacs: the teacher's confidence that counts a pixel
    config.adapt.ema_max = 0.99  # dacs: the teacher's α_t = min(1 - 1/(t+1), ema_max)
    # cps-self-train: rounds, and the CBST portion p of each (start, + step a round, at most max).
    config.adapt.rounds = 3
    # Round 0's method (the first teacher): source_only, or any adaptation method whose first
    # net is the one it is scored on (minent, adaptseg, advent, dacs).
    config.adapt.teacher = "source_only"
    # Where each student starts: "pretrained" (model.pretrained, the heads random) or "teacher"
    # (its teacher's weights whole, fine-tuned on the round's labels, as CBST does).
    config.adapt.student_init = "pretrained"
    config.adapt.cbst_start = 0.2
    config.adapt.cbst_step = 0.05
    config.adapt.cbst_max = 0.5
    # How many pixels each class keeps: "predicted" (CBST: p of the pixels predicted as it) or
    # "source" (at most p times its share of the source's labels of all pixels, so a class the
    # teacher over-predicts on the target keeps only its most confident pixels).
    config.adapt.cbst_quota = "predicted"

    # The CycleGAN translator (cps-cyclegan-train; cps_jax/cyclegan/config.py documents each field).
    config.cyclegan = cyclegan_config.get_config()

    config.cutmix = ml_collections.ConfigDict()
    config.cutmix.num_boxes = 3
    config.cutmix.area_range = (0.25, 0.5)
    config.cutmix.random_aspect_ratio = True
    # Boxes on a grid of this many pixels (1: off, the reference); the net's output stride keeps
    # every deepest feature cell within one image (cps_jax/cutmix.py).
    config.cutmix.grid = 1
    # cps_cutmix: the nets also learn the first source batch's targets on its unmixed view (with
    # config.strong, perturbed), as plain CPS; the unlabeled term is then the mean of the mixed
    # and unmixed terms. Off: the reference's mixed images only.
    config.cutmix.unmixed_term = False

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"  # the reference; or "adamw" (cps_jax/optim.py)
    config.optim.lr = 0.02
    config.optim.momentum = 0.9
    config.optim.weight_decay = 1e-4
    config.optim.poly_power = 0.9
    config.optim.classifier_lr = 1.0  # the final classifier's lr, in multiples of optim.lr
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
    config.num_visualize = 4  # validation images drawn with their predictions at each evaluation
    return config
