r"""The semi-supervised comparison on `synthetic_streets`: one cell of the table per call.

  python benchmarks/ssl_table.py --out runs/ssl_table

runs every cell (method x labeled fraction x seed) of it; one cell alone:

  cps-train --config configs/ssl_table.py:method=cps,split=1/16,seed=0 --workdir runs/cell

A narrow ResNet-18 DeepLabv3+ (output stride 16) on 64x64 crops of 64x128 scenes, 8 labeled + 8
unlabeled images per step, 600 steps, sized so the whole table (5 methods x 3 fractions x 2 seeds)
trains in under an hour on a 2-core CPU. From random initialisation (no pretrained backbone) the
learning rate is 0.1, the best of {0.02, 0.1} for the supervised baseline, for every method.

Four args change the regime for every cell alike: `scenes=N` trains on N generated scenes instead
of 1000 (fewer scenes, fewer labeled images at each fraction), `optim=adamw` uses AdamW at lr
0.002, weight decay 0.01 instead of SGD at lr 0.1, `domain=weather` renders the scenes under
varied weather and time of day (`cps_jax/data/synthetic_streets.py`), and `pretrained=FILE`
starts every net from that backbone (see README, "Pretrained backbones"), e.g.

  python benchmarks/ssl_table.py --config configs/ssl_table.py:scenes=256,optim=adamw
"""

from cps_jax import config_files
from cps_jax.data.synthetic_streets import DOMAINS


demo = config_files.sibling(__file__, "demo")

# The consistency weight of each method (the reference's VOC weights for CPS: 1.5, with CutMix 1).
WEIGHTS = {
    "supervised": {},
    "cps": {"cps_weight": 1.5},
    "cps_cutmix": {"cps_weight": 1.0},
    "mean_teacher": {"consistency_weight": 1.0},
    "cutmix_seg": {"consistency_weight": 1.0},
}


def get_config(arg: str | None = None):
    args = demo.parse_arg(arg)
    config = demo.get_config(f"split={args.get('split', '1/16')}")
    config.method = str(args.get("method", "cps"))
    config.seed = int(args.get("seed", 0))
    config.data.partition_seed = config.seed
    config.data.height, config.data.width = 64, 128
    config.data.crop_size = (64, 64)
    config.total_steps = 600
    config.optim.lr = 0.1
    config.data.num_train = int(args.get("scenes", config.data.num_train))
    config.data.domain = str(args.get("domain", config.data.domain))
    if config.data.domain not in DOMAINS:
        raise ValueError(
            f"configs/ssl_table.py: domain must be one of {DOMAINS}, got {config.data.domain!r}"
        )
    config.model.pretrained = str(args.get("pretrained", config.model.pretrained))
    optimizer = args.get("optim", "sgd")
    if optimizer == "adamw":
        config.optim.name, config.optim.lr, config.optim.weight_decay = "adamw", 0.002, 0.01
    elif optimizer != "sgd":
        raise ValueError(f"configs/ssl_table.py: optim must be 'sgd' or 'adamw', got {optimizer!r}")
    config.eval_every = config.checkpoint_every = 300
    config.log_every = 100
    config.keep_checkpoints = 1
    config.num_visualize = 2
    for key, value in WEIGHTS[config.method].items():
        config.loss[key] = value
    return config
