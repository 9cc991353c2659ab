r"""Semi-and-weakly supervised PASCAL VOC 2012 aug, as the PCT authors ran it (Wang et al., Pattern
Recognition 2022; their code's config.py and config_retrain.py): a few pixel-labeled images, every
other train_aug image with its image-level labels (from its mask, as their code derives them).

  # stage 1: progressive cross training of the hybrid and pseudo nets
  cps-train --config configs/pct_voc.py:labeled=92 --workdir runs/pct92 \
      --config.model.pretrained=resnet101_v1c.npz
  # the hybrid net's pseudo labels (multi-scale 0.5..1.5 + flip, class-masked) as a folder
  cps-pseudo-label --workdir runs/pct92 --output runs/pct92_labels --scales 0.5,0.75,1,1.25,1.5 --flip
  # stage 2: plain CE on the folder
  cps-train --config configs/pct_voc.py:labeled=92,stage=2,folder=runs/pct92_labels \
      --workdir runs/pct92_stage2 --config.model.pretrained=resnet101_v1c.npz

Args: labeled=92|183|366|732|1464 (pixel-labeled images of the 10,582; drawn with
data.partition_seed, or give the authors' list with --config.data.labeled_list=FILE), stage=1|2,
folder=<stage 2's image_folder>.

Stage 1: DeepLabv3+ R101, output stride 8, SGD lr 1e-3 (classifier x10), poly 0.9, weight decay
4e-5, 20k iterations, batch 10 (5 pixel-labeled + 5 image-labeled), crop 384, scales 0.5..2.
Stage 2: lr 0.007, batch 16, 30k iterations, otherwise alike. Figures these target (retrained,
VOC val, the authors' code): 76.2 / 77.6 / 78.7 / 79.9 / 81.2 mIoU for 92 .. 1,464; the authors
evaluate with multi-scale + flip and a dense CRF, which cps_jax does not have.
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")

CONFIG_FILE = "configs/pct_voc.py"
TRAIN_AUG = 10_582
LABELED = (92, 183, 366, 732, 1464)
# The authors' retrained VOC val mIoU for each LABELED count (README).
TARGETS = {92: 76.2, 183: 77.6, 366: 78.7, 732: 79.9, 1464: 81.2}
ARGS = {"labeled": 92, "stage": 1, "folder": ""}


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, ARGS, CONFIG_FILE)
    if args["labeled"] not in LABELED:
        raise ValueError(f"{CONFIG_FILE}: labeled must be one of {LABELED}, got {args['labeled']}")
    if args["stage"] not in (1, 2):
        raise ValueError(f"{CONFIG_FILE}: stage must be 1 or 2, got {args['stage']}")
    config = common.base_config()
    common.apply_recipe(config, "reference", CONFIG_FILE)
    config.data.name = "voc_aug"
    # ceil(10,582 * n / 10,582) = n pixel-labeled images; the rest have image-level labels.
    config.data.labeled_fraction = f"{args['labeled']}/{TRAIN_AUG}"
    config.data.image_labeled_fraction = "rest"
    config.data.crop_size = (384, 384)
    config.data.scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    config.data.worker_threads = 8

    config.model.backbone = "resnet101"
    config.model.stem = "deep"
    config.model.output_stride = 8
    config.model.multi_grid = (1, 1, 1)  # the authors' MODEL_BACKBONE_MULTIGRID: False
    config.model.width = 64
    config.model.aspp_channels = 256
    config.model.low_level_channels = 48
    config.model.decoder_channels = 256
    config.model.bn_running_var = "unbiased"
    config.model.classifier_bias_init = "torch"

    config.optim.name = "sgd"
    config.optim.momentum = 0.9
    config.optim.weight_decay = 4e-5
    config.optim.poly_power = 0.9
    config.eval.scales = (0.5, 0.75, 1.0, 1.25, 1.5)
    config.eval.flip = True
    config.eval_batch_size = 8
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    config.keep_checkpoints = 3

    if args["stage"] == 1:
        config.method = "pct"
        config.pct.cls_skip = (0,)  # VOC's background stays out of the classification loss
        config.optim.lr = 1e-3
        config.optim.classifier_lr = 10.0
        config.total_steps = 20_000
        config.batch_size_labeled = config.batch_size_unlabeled = 5
    else:
        if not args["folder"]:
            raise ValueError(f"{CONFIG_FILE}: stage=2 needs folder=<the folder of cps-pseudo-label>")
        config.method = "supervised"
        config.data.name, config.data.folder = "image_folder", args["folder"]
        config.data.labeled_fraction, config.data.image_labeled_fraction = "1", ""
        config.optim.lr = 0.007
        config.total_steps = 30_000
        config.batch_size_labeled = 16
    return config
