r"""SYNTHIA-RAND-CITYSCAPES -> Cityscapes on the 16-class protocol (the 19 Cityscapes classes
less terrain, truck and train), otherwise as configs/gta5_to_cityscapes.py.

  cps-train --config configs/synthia_to_cityscapes.py:method=advent --workdir runs/s2c_advent \
      --config.model.pretrained=resnet101_v1c.npz

Args: method=source_only|minent|adaptseg|advent|dacs|cps, source=<a translated SYNTHIA folder>.
"""

from cps_jax import config_files
from cps_jax.data.synthia import SYNTHIA_16

common = config_files.sibling(__file__, "common")
gta5_to_cityscapes = config_files.sibling(__file__, "gta5_to_cityscapes")

CONFIG_FILE = "configs/synthia_to_cityscapes.py"


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, gta5_to_cityscapes.ARGS, CONFIG_FILE)
    return gta5_to_cityscapes.from_args(args, "synthia", tuple(SYNTHIA_16), CONFIG_FILE)
