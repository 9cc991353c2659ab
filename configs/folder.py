r"""CPS on a folder of one's own images and masks (the `image_folder` layout of
`cps_jax/data/image_folder.py`: classes.json, images/, masks/, optional unlabeled/ and val/).

  cps-train --config configs/folder.py:path=MY_DATA --workdir runs/mine
  cps-eval  --workdir runs/mine

Everything else is configs/demo.py's (its args too, e.g. `:path=MY_DATA,split=1/4`); any field
through `--config.<field>=<value>`, e.g. `--config.data.val_fraction=1/5`.
"""

from cps_jax import config_files

demo = config_files.sibling(__file__, "demo")


def get_config(arg: str | None = None):
    args = demo.parse_arg(arg)
    path = str(args.pop("path", ""))
    rest = ",".join(k if v is True else f"{k}={v}" for k, v in args.items())
    config = demo.get_config(rest)
    config.data.name = "image_folder"
    config.data.folder = path
    return config
