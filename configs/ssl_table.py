r"""The semi-supervised comparison on `synthetic_streets`: one cell of the table per call.

  python benchmarks/ssl_table.py --out runs/ssl_table

runs every cell (row x labeled fraction x seed) of it; one cell alone:

  cps-train --config configs/ssl_table.py:method=cps,split=1/16,seed=0 --workdir runs/cell

A narrow ResNet-18 DeepLabv3+ (output stride 16) on 64x64 crops of 64x128 scenes, 8 labeled + 8
unlabeled images per step, 600 steps, sized so the whole table (5 methods x 3 fractions x 2 seeds)
trains in under an hour on a 2-core CPU. From random initialisation (no pretrained backbone) the
learning rate is 0.1, the best of {0.02, 0.1} for the supervised baseline, for every method.

Args that change the regime for every cell alike: `scenes=N` trains on N generated scenes instead
of 1000 (fewer scenes, fewer labeled images at each fraction), `optim=adamw` uses AdamW at lr
0.002, weight decay 0.01 instead of SGD at lr 0.1, `domain=weather` renders the scenes under
varied weather and time of day (`cps_jax/data/synthetic_streets/weather.py`), `pretrained=FILE`
starts every net from that backbone (see README, "Pretrained backbones"), `classes=benchmark` keeps
the classes of BENCHMARK_CLASSES (the others become ignore), `steps=N` trains N steps,
`cutmix_boxes=N` mixes N boxes into each CutMix image (3, the reference's), `unmixed_term=True`
adds plain CPS's term on the unmixed images to CPS + CutMix (config.cutmix.unmixed_term),
`cutmix_grid=N` puts CutMix's boxes on a grid of N pixels (config.cutmix.grid), `cps_weight=X`
sets CPS's λ instead of the method's (WEIGHTS), e.g.

  python benchmarks/ssl_table.py --config configs/ssl_table.py:scenes=256,optim=adamw

`recipe=reference` (default) or `recipe=recommended` picks the pseudo-label recipe of
configs/common.py (RECIPES). ROWS names the rows `benchmarks/ssl_table.py --rows` can train.

`regime=labels` is the benchmark in which labels are the bottleneck (README, "When unlabeled
images help"): LABELS_REGIME's args, with every net starting from the backbone of SOURCE: a
ResNet-18 trained on all labels of 1000 *other* scenes (data-set seed 1) in the flat `render`
domain, as the paper starts from ImageNet. `benchmarks/ssl_table.py --source FILE` trains and
exports it first if FILE does not exist.
"""

from cps_jax import config_files
from cps_jax.data.synthetic_streets import DOMAINS

common = config_files.sibling(__file__, "common")

CONFIG_FILE = "configs/ssl_table.py"  # names this file in errors

# The consistency weight of each method (the reference's VOC weights for CPS: 1.5, with CutMix 1).
WEIGHTS = {
    "supervised": {},
    "cps": {"cps_weight": 1.5},
    "cps_cutmix": {"cps_weight": 1.0},
    "mean_teacher": {"consistency_weight": 1.0},
    "cutmix_seg": {"consistency_weight": 1.0},
    "supervised_tags": {},
    "pct": {},
}

# The classes every method can learn at 64x128 with all labels (each >= 20 IoU there); pole,
# traffic light, traffic sign, wall, fence and person are a few pixels wide or rare at this size
# and stay near 0 IoU even with every label, which would cap any gain (README).
BENCHMARK_CLASSES = ("road", "sidewalk", "building", "vegetation", "terrain", "sky", "car")

# The regime in which labels are the bottleneck (measured: README, "When unlabeled images help").
LABELS_REGIME = "scenes=256,optim=adamw,classes=benchmark,steps=900"
# The source backbone of that regime: (this config's args, data-set seed of its scenes).
SOURCE = ("method=supervised,split=1/1,domain=render,steps=1800", 1)

# Table rows: name -> (label, the cell's args).
ROWS = {
    "supervised": ("Supervised baseline", "method=supervised"),
    "mean_teacher": ("Mean Teacher", "method=mean_teacher"),
    "cutmix_seg": ("CutMix-Seg", "method=cutmix_seg"),
    "cps": ("CPS", "method=cps"),
    "cps_cutmix": ("CPS + CutMix", "method=cps_cutmix"),
    "cps_recommended": ("CPS, recommended recipe", "method=cps,recipe=recommended"),
    # The control of the recipe's colour perturbation: the supervised net with the perturbation
    # on its labeled images (what the perturbation gives without unlabeled images).
    "supervised_jitter": (
        "Supervised, recipe's colour perturbation on labeled images",
        "method=supervised,recipe=recommended,labeled_jitter=True",
    ),
    "cps_recommended_jitter": (
        "CPS, recommended recipe, colour perturbation on labeled images too",
        "method=cps,recipe=recommended,labeled_jitter=True",
    ),
    "cps_cutmix_recommended": (
        "CPS + CutMix, recommended recipe",
        "method=cps_cutmix,recipe=recommended",
    ),
    # One box per mixed image instead of the reference's three (XOR-ed): more of each street
    # scene's layout stays whole.
    "cps_cutmix_recommended_one_box": (
        "CPS + CutMix (one box), recommended recipe",
        "method=cps_cutmix,recipe=recommended,cutmix_boxes=1",
    ),
    # The mixed images' term plus plain CPS's on the unmixed (perturbed) ones: CutMix as a second
    # view of the unlabeled images instead of the only one.
    "cps_cutmix_recommended_unmixed": (
        "CPS + CutMix, recommended recipe, with CPS's term on the unmixed images",
        "method=cps_cutmix,recipe=recommended,unmixed_term=True",
    ),
    # Boxes on the net's output-stride grid (16 px): at 64x64 crops the reference's boxes cut
    # 65 % of the deepest feature cells, so most cells the nets learn from hold two scenes.
    "cps_cutmix_recommended_grid": (
        "CPS + CutMix (boxes on the 16-px feature grid), recommended recipe",
        "method=cps_cutmix,recipe=recommended,cutmix_grid=16",
    ),
    # Plain CPS's λ (1.5) instead of the reference's 1.0 for CutMix.
    "cps_cutmix_recommended_weight_1.5": (
        "CPS + CutMix, recommended recipe, λ 1.5",
        "method=cps_cutmix,recipe=recommended,cps_weight=1.5",
    ),
    # Both changes that moved CPS + CutMix up on their own: the unmixed images' term, and plain
    # CPS's λ 1.5 instead of the reference's 1.0 for CutMix.
    "cps_cutmix_recommended_unmixed_weight_1.5": (
        "CPS + CutMix, recommended recipe, with CPS's term on the unmixed images, λ 1.5",
        "method=cps_cutmix,recipe=recommended,unmixed_term=True,cps_weight=1.5",
    ),
    # With image-level labels for every image without pixel labels (README, "A few pixel labels
    # plus many image-level labels"); the rows above see those images as unlabeled.
    "supervised_tags": (
        "Supervised, CCE + image labels",
        "method=supervised_tags,image_labeled=rest",
    ),
    "cps_class_mask": (
        "CPS, recommended recipe, class-masked pseudo labels",
        "method=cps,recipe=recommended,image_labeled=rest,class_mask=True",
    ),
    "pct": ("PCT", "method=pct,image_labeled=rest"),
    "pct_stage2": ("PCT + stage 2", "method=pct,image_labeled=rest"),
}

# Rows trained on the pseudo labels of another row's run (stage 2): row -> the stage-1 row.
RETRAIN = {"pct_stage2": "pct"}
# How stage 2's pseudo labels are inferred: the authors' scales, with flip.
RETRAIN_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)


def get_config(arg: str | None = None):
    config = common.base_config()
    # The `:arg` args and their defaults; scenes, domain and pretrained: the base config's.
    defaults = {
        "method": "cps",
        "split": "1/16",
        "seed": 0,
        "steps": 600,
        "scenes": config.data.num_train,
        "domain": config.data.domain,
        "pretrained": config.model.pretrained,
        "optim": "sgd",
        "classes": "all",
        "recipe": "reference",
        "regime": "",
        "image_labeled": "",  # config.data.image_labeled_fraction
        "class_mask": False,  # config.pseudo.class_mask
        "labeled_jitter": False,  # config.strong.labeled
        "cutmix_boxes": config.cutmix.num_boxes,
        "unmixed_term": config.cutmix.unmixed_term,
        "cutmix_grid": config.cutmix.grid,
        "cps_weight": -1.0,  # the method's (WEIGHTS)
    }
    args = common.parse_arg(arg, defaults, CONFIG_FILE)
    if args["regime"] == "labels":  # the regime's args, under those given beside it
        args = common.parse_arg(f"{LABELS_REGIME},{arg}", defaults, CONFIG_FILE)
    elif args["regime"]:
        raise ValueError(f"{CONFIG_FILE}: regime must be 'labels', got {args['regime']!r}")
    config.method = args["method"]
    config.seed = args["seed"]
    config.data.labeled_fraction = args["split"]
    config.data.image_labeled_fraction = args["image_labeled"]
    config.data.partition_seed = config.seed
    config.data.height, config.data.width = 64, 128
    config.data.crop_size = (64, 64)
    config.total_steps = args["steps"]
    config.optim.lr = 0.1
    config.data.num_train = args["scenes"]
    config.data.domain = args["domain"]
    if config.data.domain not in DOMAINS:
        raise ValueError(
            f"{CONFIG_FILE}: domain must be one of {DOMAINS}, got {config.data.domain!r}"
        )
    config.model.pretrained = args["pretrained"]
    optimizer = args["optim"]
    if optimizer == "adamw":
        config.optim.name, config.optim.lr, config.optim.weight_decay = "adamw", 0.002, 0.01
    elif optimizer != "sgd":
        raise ValueError(f"{CONFIG_FILE}: optim must be 'sgd' or 'adamw', got {optimizer!r}")
    classes = args["classes"]
    if classes == "benchmark":
        config.data.classes = BENCHMARK_CLASSES
    elif classes != "all":
        raise ValueError(f"{CONFIG_FILE}: classes must be 'all' or 'benchmark', got {classes!r}")
    # Evaluate and checkpoint twice per run, whatever its length.
    config.eval_every = config.checkpoint_every = max(1, config.total_steps // 2)
    config.log_every = max(1, config.total_steps // 6)
    config.keep_checkpoints = 1
    config.num_visualize = 2
    if config.method not in WEIGHTS:
        raise ValueError(
            f"{CONFIG_FILE}: method must be one of {sorted(WEIGHTS)}, got {config.method!r}"
        )
    for key, value in WEIGHTS[config.method].items():
        config.loss[key] = value
    if args["cps_weight"] >= 0:
        config.loss.cps_weight = args["cps_weight"]
    common.apply_recipe(config, args["recipe"], CONFIG_FILE)
    config.pseudo.class_mask = args["class_mask"]
    config.strong.labeled = args["labeled_jitter"]
    config.cutmix.num_boxes = args["cutmix_boxes"]
    config.cutmix.unmixed_term = args["unmixed_term"]
    config.cutmix.grid = args["cutmix_grid"]
    return config


def retrain_config(config, folder: str):
    """Stage 2 of `config`'s cell: the supervised net on the image_folder of its pseudo labels
    (which holds the cell's classes and validation set), with the same regime otherwise."""
    config = config.copy_and_resolve_references()
    config.method = "supervised"
    config.data.name, config.data.folder = "image_folder", folder
    config.data.classes = ()
    config.data.labeled_fraction, config.data.image_labeled_fraction = "1", ""
    return config


def source_config():
    """The config that trains the source backbone of `regime=labels` (SOURCE)."""
    arg, dataset_seed = SOURCE
    config = get_config(arg)
    config.data.dataset_seed = dataset_seed
    return config
