r"""CPS on a folder of one's own images and masks (the `image_folder` layout of
`cps_jax/data/image_folder.py`: classes.json, images/, masks/, optional unlabeled/ and val/).

  cps-train --config configs/folder.py:path=MY_DATA --workdir runs/mine
  cps-eval  --workdir runs/mine

Everything else is configs/demo.py's (its args too, e.g. `:path=MY_DATA,split=1/4`); any field
through `--config.<field>=<value>`, e.g. `--config.data.val_fraction=1/5`.
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")
demo = config_files.sibling(__file__, "demo")

CONFIG_FILE = "configs/folder.py"  # names this file in errors
ARGS = {"path": "", **demo.ARGS}  # the folder, and the demo's args


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, ARGS, CONFIG_FILE)
    config = demo.from_args(args, CONFIG_FILE)
    config.data.name = "image_folder"
    config.data.folder = args["path"]
    return config
