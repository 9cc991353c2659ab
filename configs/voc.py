r"""The paper's voc setting: `configs/paper.py` with dataset=voc.

  cps-train --config configs/voc.py:split=1/8,backbone=r101,cutmix=True --workdir runs/voc \
      --config.model.pretrained=resnet101_v1c.npz

Args: split=1/16|1/8|1/4|1/2, backbone=r50|r101, cutmix=True|False, method=<override>.
"""

from cps_jax import config_files

paper = config_files.sibling(__file__, "paper")


def get_config(arg: str | None = None):
    return paper.from_arg(f"dataset=voc,{arg or ''}", "configs/voc.py")
