"""Facts about label maps that every part of the package shares: the ignore value, how class ids
become colours, and how a data set's own label ids become train ids.

Only NumPy here: data-set modules, losses, evaluation and the configs all import it.
"""

import numpy as np

# Mask value of pixels without a class (void, boundaries, padding, unlabeled images): no loss,
# no place in the confusion matrix.
IGNORE_LABEL = 255
# The colour of ignored pixels and of any id outside the palette.
IGNORE_COLOUR = (0, 0, 0)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """[H, W] (or [H, W, 1]) class ids -> [H, W, 3] uint8 colours of `palette` [C, 3]; ids outside
    the palette (e.g. IGNORE_LABEL) are IGNORE_COLOUR."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    valid = (labels >= 0) & (labels < len(palette))
    out = np.asarray(palette, np.uint8)[np.where(valid, labels, 0)]
    out[~valid] = IGNORE_COLOUR
    return out


def id_table(train_ids: dict) -> np.ndarray:
    """[256] uint8 lookup table, source id -> train id, for the pairs of `train_ids`; every other
    id maps to IGNORE_LABEL. `table[mask]` decodes a uint8 mask."""
    table = np.full(256, IGNORE_LABEL, np.uint8)
    for source_id, train_id in train_ids.items():
        table[source_id] = train_id
    return table
