"""Labeled / unlabeled partitions of a training set.

A partition is either a fraction of the training ids (drawn from one seeded permutation, so that
the 1/16, 1/8, 1/4 and 1/2 labeled sets of a seed are nested, as in the CPS paper) or an explicit
file listing the labeled ids (e.g. the split lists shipped with the reference code).

Counts: ``labeled_count`` takes the CEILING of ``n * fraction``. That is the rule that reproduces
all eight counts of the paper (VOC aug 10,582 -> 662 / 1323 / 2646 / 5291, Cityscapes 2,975 ->
186 / 372 / 744 / 1488 for 1/16 .. 1/2). Rounding half up would give 661 for VOC 1/16.

With image-level labels (`image_labeled`), the images without pixel labels split once more: an
image-labeled set (only the list of classes present is known) and the unlabeled rest.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np

__all__ = [
    "parse_fraction",
    "labeled_count",
    "split_labeled",
    "read_id_list",
    "partition",
    "image_labeled",
]


def _as_exact_fraction(value: str | float) -> Fraction:
    """Exact rational form of a fraction, so ceil(n * f) has no float error (1/3 stays 1/3)."""
    if isinstance(value, bool):  # bool is an int subclass; True would silently mean 1.0
        raise ValueError(f"invalid fraction {value!r}: expected a number like 0.125 or '1/8'")
    try:
        if isinstance(value, str):
            frac = Fraction(value.strip())
        else:
            # limit_denominator recovers 1/3 from 0.333...; exact binary fractions are unchanged.
            frac = Fraction(float(value)).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError, TypeError, OverflowError):
        raise ValueError(
            f"invalid fraction {value!r}: expected a number like 0.125 or '1/8'"
        ) from None
    if not 0 < frac <= 1:
        raise ValueError(f"invalid fraction {value!r}: must be in (0, 1]")
    return frac


def parse_fraction(value: str | float) -> float:
    """'1/8' -> 0.125, '0.25' -> 0.25, 0.5 -> 0.5. ValueError naming the value otherwise."""
    return float(_as_exact_fraction(value))


def labeled_count(num_examples: int, fraction: str | float) -> int:
    """Number of labeled examples: ceil(n * fraction), at least 1 (see module docstring)."""
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    return max(1, math.ceil(num_examples * _as_exact_fraction(fraction)))


def split_labeled(
    num_examples: int, fraction: str | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, unlabeled) sorted int64 index arrays.

    labeled = the first labeled_count(...) entries of ONE permutation drawn from `seed`, so for a
    fixed seed smaller fractions are subsets of larger ones. Disjoint; union = range(n).
    """
    k = labeled_count(num_examples, fraction)
    perm = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(perm[:k]).astype(np.int64), np.sort(perm[k:]).astype(np.int64)


# Suffixes of Cityscapes file names, stripped so 'x_leftImg8bit.png' finds the id 'x'.
_NAME_SUFFIXES = ("_leftImg8bit", "_gtFine_labelTrainIds", "_gtFine_labelIds", "_gtFine_color")


def _short_key(s: str) -> str:
    """File-name key: basename without extension or Cityscapes suffix ('a/b/c_leftImg8bit.png' -> 'c')."""
    stem = os.path.splitext(os.path.basename(s))[0]
    for suffix in _NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_id_list(path: str, ids: Sequence[str]) -> np.ndarray:
    """Sorted indices into `ids` of the examples listed in `path`, one per line.

    Blank lines and '#' comments are ignored, whitespace is stripped. A line is matched on the exact
    id first; failing that on its first whitespace-separated token (lists of 'image label' pairs);
    failing that on the file-name key (basename, no extension, no Cityscapes suffix), which must
    identify a single id. Unknown, ambiguous or duplicate ids and empty files raise ValueError
    naming the file and line.
    """
    index = {id_: i for i, id_ in enumerate(ids)}
    by_key: dict[str, list[int]] = {}
    for i, id_ in enumerate(ids):
        by_key.setdefault(_short_key(id_), []).append(i)

    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()

    seen: dict[int, int] = {}  # index -> line number where it first appeared
    for lineno, raw in enumerate(lines, start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        token = entry.split()[0]
        i = index.get(entry, index.get(token))
        if i is None:
            matches = by_key.get(_short_key(token), [])
            if len(matches) > 1:
                names = ", ".join(repr(ids[j]) for j in matches[:5])
                raise ValueError(f"{path}:{lineno}: id {entry!r} is ambiguous, it matches {names}")
            if not matches:
                raise ValueError(
                    f"{path}:{lineno}: unknown id {entry!r} (not among the {len(ids)} ids of the set)"
                )
            i = matches[0]
        if i in seen:
            raise ValueError(
                f"{path}:{lineno}: duplicate id {ids[i]!r} (first listed on line {seen[i]})"
            )
        seen[i] = lineno

    if not seen:
        raise ValueError(
            f"{path}: the id list is empty (no ids after removing blank lines and comments)"
        )
    return np.array(sorted(seen), dtype=np.int64)


def partition(
    ids: Sequence[str],
    *,
    fraction: str | float | None = None,
    labeled_list: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, unlabeled) sorted indices into `ids`; exactly one of fraction / labeled_list.

    `seed` only affects the fraction split; with a list, unlabeled is the complement of the list.
    """
    if (fraction is None) == (labeled_list is None):
        raise ValueError(
            "give exactly one of fraction= or labeled_list= "
            f"(got fraction={fraction!r}, labeled_list={labeled_list!r})"
        )
    if fraction is not None:
        return split_labeled(len(ids), fraction, seed)
    labeled = read_id_list(labeled_list, ids)
    unlabeled = np.setdiff1d(np.arange(len(ids), dtype=np.int64), labeled)
    return labeled, unlabeled


# `config.data.image_labeled_fraction`: "" none; "rest" every image without pixel labels.
IMAGE_LABELED_REST = "rest"


def image_labeled(
    num_examples: int, labeled: np.ndarray, image_fraction: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(image-labeled, unlabeled) sorted indices: the images outside `labeled` split by
    `image_fraction` ("" none, "rest" all of them, or a fraction of `num_examples` such as
    '1/2', at most all of them).

    The image-labeled ones are the first of one seeded permutation of the non-labeled images,
    so for a fixed seed smaller fractions are subsets of larger ones. Disjoint from `labeled`
    and from each other; with `labeled` they cover range(num_examples).
    """
    rest = np.setdiff1d(np.arange(num_examples, dtype=np.int64), labeled)
    if not image_fraction:
        return np.zeros(0, np.int64), rest
    if image_fraction == IMAGE_LABELED_REST:
        return rest, np.zeros(0, np.int64)
    try:
        count = min(labeled_count(num_examples, image_fraction), len(rest))
    except ValueError as error:
        raise ValueError(
            f"config.data.image_labeled_fraction: {error} (or '{IMAGE_LABELED_REST}', or '')"
        ) from None
    # Its own stream of draws (seed + 1): the labeled set's permutation is left as it is.
    order = rest[np.random.default_rng(seed + 1).permutation(len(rest))]
    return np.sort(order[:count]), np.sort(order[count:])
