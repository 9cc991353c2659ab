"""The colour tables that scenes draw their appearance from (sRGB, float32 in [0, 1]).

Each scene picks entries and jitters them (`look.py`), so a class takes many colours across
scenes. The tables are hex triplets for brevity; the label colour of each class is in
`cps_jax.data.palette`.
"""

import numpy as np


def rgb(*values):
    """One colour (r, g, b) or several ((r, g, b), ...) in 0..255 -> float32 in [0, 1]."""
    return np.array(values, np.float32) / 255.0


def hex_table(text):
    """'rrggbb rrggbb ...' -> float32 [n, 3] in [0, 1]."""
    return rgb(*[tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in text.split()])


# (zenith, horizon) pairs
SKIES = hex_table(
    "3c78c8 aac8eb  5a96dc cddef0  a5aab2 cdcdd2  767a84 a8a8ac  46508c f0aa6e "
    "28325f be8278  8caac8 d7d7cd  64a0d7 e8ecf0  bebeb9 e1ded2  506482 96a0aa"
).reshape(-1, 2, 3)
ROADS = hex_table("464648 5a5a5c 6e6c69 807e7a 3a3c40 645f5a 918f8c 504e56 73645f 2d2e32")
SIDEWALKS = hex_table("a0a09b b9b4aa 8c8c8c aa6e5f beaf96 787673 cdcbc3 968278 afa0af 828c96")
TERRAINS = hex_table("5a7d32 6e8c3c 46642d a0965a 826946 788246 968c6e 5f6e3c")
VEGETATION = hex_table(
    "325a23 466e28 28461e 5a7832 3c643c 788228 966e28 aa5a23 505f2d 233c28 648c46"
)
# facade materials; the order is that of the per-scene style weights
BUILDINGS = {
    "brick": hex_table("964632 aa5a3c 783c2d b46e50 8c6450 6e3228 a07864"),
    "concrete": hex_table("969691 787876 afaaa0 646469 878278 bebeb9"),
    "plaster": hex_table("dcc8a0 c8b496 e6dcc8 b4c8d2 d2aa96 bed2b4 f0ebe1 c8a0aa aab4c8 e6be78"),
    "glass": hex_table("3c5a6e 506e78 283c50 64828c 465046 6e7887"),
    "dark": hex_table("37373c 4b4641 5a5550 3c322d"),
}
STYLES = tuple(BUILDINGS)
WINDOWS = hex_table("1e232d 323c4b 505f6e 141619 6e8296 3c3732")
WINDOW_FRAMES = hex_table("ebebe6 282828 786e64")
WALLS = hex_table("a0a09b 82827d b4aa96 96503c 6e6e73 c8c3b9 786450 aa9682")
FENCES = hex_table("323232 284632 787878 6e5032 966e46 dcdcd7 503c28 3c505a")
POLES = hex_table("6e6e6e 3c3c3c 283c2d 969696 50505a 1e1e1e 786e5a")
# the last one only at cross streets
LIGHT_HOUSINGS = hex_table("1e1e1e 3c3c37 bea01e 284632")
CARS = hex_table(
    "e6e6e6 141416 a0a0a5 646469 aa1414 142878 1e3c8c 145028 "
    "e6c81e dc6414 6e4628 c8bea0 461419 8caabe f5f5f0"
)
SKIN = hex_table("ffdbac f1c27d e0ac69 c68642 8d5524 5a3825")
HAIR = hex_table("140f0a 3c2819 6e4b28 c8aa64 969696 823214")
TROUSERS = hex_table("283c6e 19191e 96825f 5a5a5f 3c508c 6e2828 c8c8c3")
BARK = hex_table("463728 5a5046 3c322d 6e645a")
