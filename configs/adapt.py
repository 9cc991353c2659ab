r"""Synthetic to real on `synthetic_streets`: the labeled `render` domain as the source, the
`weather` (or `photo`) domain as the unlabeled target, validation on the target. Source and target
are drawn with different data-set seeds, so no target scene has a labeled twin in the source.

  cps-train --config configs/adapt.py:method=minent,seed=0 --workdir runs/adapt_minent
  cps-self-train --config configs/adapt.py:method=source_only --workdir runs/adapt_st --rounds 3
  cps-train --config configs/adapt.py:method=supervised,target_labels=True --workdir runs/adapt_oracle

Args: method=source_only|minent|adaptseg|advent|dacs|cps (CPS across domains: both nets on the
source labels, the target as the unlabeled stream)|supervised (with target_labels=True: the
upper bound, trained on the target's own labels), target=weather|photo, seed, steps, source=<a
folder of a translated source, e.g. from cps-cyclegan-translate; default the render domain>,
teacher=<round 0 of cps-self-train: source_only (default) or an adaptation method, e.g. dacs>,
labeled_jitter=True (the recommended recipe's colour perturbation on the labeled images too: on
the source, and in self-training on the students' source and pseudo-labeled target; DACS has it
on its mixed images), student_init=pretrained|teacher (cps-self-train's students start from the
backbone, or as their teacher whole, as CBST fine-tunes), cbst_quota=predicted|source (each class
keeps p of the pixels predicted as it, or at most p times its share of the source's labels),
cbst_start / cbst_step (p of the first round, 0.2, and its growth per round, 0.05; both 0: rounds
that keep only the pixels in each class's top confidence bin, of width 1e-4, the control of what
the pseudo labels add).
The regime of the labels benchmark of configs/ssl_table.py (64x128 scenes, the benchmark's 7
classes, AdamW, 900 steps per run), from the same render-domain backbone (`pretrained=FILE`).
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")
ssl_table = config_files.sibling(__file__, "ssl_table")

CONFIG_FILE = "configs/adapt.py"
_BASE_ADAPT = common.base_config().adapt
METHODS = ("source_only", "minent", "adaptseg", "advent", "dacs", "cps", "supervised")
ARGS = {
    "method": "source_only",
    "target": "weather",
    "seed": 0,
    "steps": 900,
    "target_labels": False,
    "source": "",
    "pretrained": "",
    "teacher": "source_only",  # config.adapt.teacher: round 0 of cps-self-train
    "labeled_jitter": False,  # config.strong.labeled: colour-perturb the labeled (source) images
    "student_init": "pretrained",  # config.adapt.student_init: where cps-self-train's students start
    "cbst_quota": "predicted",  # config.adapt.cbst_quota: how many pixels each class keeps
    # config.adapt.cbst_start / cbst_step: p of round 1 and its growth per round (the base's).
    "cbst_start": _BASE_ADAPT.cbst_start,
    "cbst_step": _BASE_ADAPT.cbst_step,
}


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, ARGS, CONFIG_FILE)
    if args["method"] not in METHODS:
        raise ValueError(f"{CONFIG_FILE}: method must be one of {METHODS}, got {args['method']!r}")
    if args["target"] not in ("weather", "photo"):
        raise ValueError(f"{CONFIG_FILE}: target must be weather or photo, got {args['target']!r}")
    method = args["method"]
    # The benchmark regime's every field, then the two domains.
    base_method = "cps" if method == "cps" else "supervised"
    config = ssl_table.get_config(
        f"regime=labels,method={base_method},split=1/1,seed={args['seed']},steps={args['steps']},"
        f"domain={args['target']},pretrained={args['pretrained']},recipe=recommended"
    )
    config.method = method
    config.adapt.teacher = args["teacher"]
    config.strong.labeled = args["labeled_jitter"]
    config.adapt.student_init = args["student_init"]
    config.adapt.cbst_quota = args["cbst_quota"]
    config.adapt.cbst_start, config.adapt.cbst_step = args["cbst_start"], args["cbst_step"]
    data, source = config.data, config.data.source
    if not args["target_labels"]:
        if args["source"]:
            source.name, source.folder = "image_folder", args["source"]
            source.classes = ()  # the folder holds the benchmark's classes already
        else:
            source.name, source.domain, source.dataset_seed = "synthetic_streets", "render", 1
            for field in ("height", "width", "num_train", "num_validation"):
                source[field] = data[field]
            source.classes = data.classes
    elif method != "supervised":
        raise ValueError(f"{CONFIG_FILE}: target_labels=True is the supervised upper bound (method=supervised)")
    return config
