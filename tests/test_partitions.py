import numpy as np
import pytest

from cps_jax.data.partitions import (
    labeled_count,
    parse_fraction,
    partition,
    read_id_list,
    split_labeled,
)

FRACTIONS = ["1/16", "1/8", "1/4", "1/2"]


@pytest.mark.parametrize(
    "value, expected",
    [("1/8", 0.125), ("0.25", 0.25), (0.5, 0.5), (1, 1.0), (" 1/16 ", 0.0625), ("1", 1.0)],
)
def test_parse_fraction(value, expected):
    assert parse_fraction(value) == expected


@pytest.mark.parametrize("value", ["abc", "1/0", "0", "-0.5", "3/2", 1.5, 0.0, "", True])
def test_parse_fraction_rejects(value):
    with pytest.raises(ValueError, match="fraction") as e:
        parse_fraction(value)
    assert repr(value) in str(e.value)  # the message names the bad value


@pytest.mark.parametrize(
    "n, counts",
    [(10582, [662, 1323, 2646, 5291]), (2975, [186, 372, 744, 1488])],
)
def test_paper_counts(n, counts):
    """The paper's split sizes (VOC aug, Cityscapes) for 1/16 .. 1/2: ids only, no data."""
    assert [labeled_count(n, f) for f in FRACTIONS] == counts
    assert [labeled_count(n, parse_fraction(f)) for f in FRACTIONS] == counts
    ids = [f"img_{i:05d}" for i in range(n)]
    for f, c in zip(FRACTIONS, counts):
        labeled, unlabeled = partition(ids, fraction=f, seed=0)
        assert (len(labeled), len(unlabeled)) == (c, n - c)


def test_labeled_count_edge_cases():
    assert labeled_count(10, 0.01) == 1  # at least one
    assert labeled_count(10, 1) == 10
    assert labeled_count(9, 1 / 3) == 3  # no float error pushing ceil to 4
    with pytest.raises(ValueError):
        labeled_count(0, 0.5)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_split_nested_disjoint_union(seed):
    n = 1000
    prev = None
    for f in FRACTIONS + ["1"]:
        labeled, unlabeled = split_labeled(n, f, seed)
        assert labeled.dtype.kind == "i" and unlabeled.dtype.kind == "i"
        assert np.all(np.diff(labeled) > 0) and np.all(np.diff(unlabeled) > 0)  # sorted, unique
        assert np.intersect1d(labeled, unlabeled).size == 0
        np.testing.assert_array_equal(np.union1d(labeled, unlabeled), np.arange(n))
        if prev is not None:
            assert np.isin(prev, labeled).all(), f"{f} does not contain the smaller split"
        prev = labeled


def test_split_deterministic_and_seed_dependent():
    a = split_labeled(500, "1/8", seed=7)
    b = split_labeled(500, "1/8", seed=7)
    c = split_labeled(500, "1/8", seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


IDS = [
    "aachen/aachen_000000_000019",
    "aachen/aachen_000001_000019",
    "bochum/bochum_000000_000313",
    "2007_000032",
    "2007_000039",
]


def _write(tmp_path, text, name="labeled.txt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_read_id_list_with_comments_and_paths(tmp_path):
    path = _write(
        tmp_path,
        "# labeled split\n"
        "\n"
        "  2007_000039  \n"
        "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png\n"
        "bochum/bochum_000000_000313   # trailing comment\n"
        "JPEGImages/2007_000032.jpg SegmentationClassAug/2007_000032.png\n",
    )
    np.testing.assert_array_equal(read_id_list(path, IDS), [1, 2, 3, 4])


def test_partition_from_list(tmp_path):
    path = _write(tmp_path, "2007_000032\naachen/aachen_000000_000019\n")
    labeled, unlabeled = partition(IDS, labeled_list=path)
    np.testing.assert_array_equal(labeled, [0, 3])
    np.testing.assert_array_equal(unlabeled, [1, 2, 4])


def test_read_id_list_unknown_id(tmp_path):
    path = _write(tmp_path, "2007_000032\n# comment\nnot_an_id_42\n", name="bad_split.txt")
    with pytest.raises(ValueError) as e:
        read_id_list(path, IDS)
    msg = str(e.value)
    assert "bad_split.txt" in msg and "not_an_id_42" in msg and ":3" in msg


def test_read_id_list_duplicate(tmp_path):
    path = _write(
        tmp_path, "2007_000032\n2007_000039\nJPEGImages/2007_000032.jpg\n", name="dup.txt"
    )
    with pytest.raises(ValueError) as e:
        read_id_list(path, IDS)
    msg = str(e.value)
    assert "dup.txt" in msg and "2007_000032" in msg and "duplicate" in msg and ":3" in msg


def test_read_id_list_empty(tmp_path):
    path = _write(tmp_path, "# only a comment\n\n   \n", name="empty.txt")
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        read_id_list(path, IDS)


def test_read_id_list_ambiguous(tmp_path):
    ids = ["train/a/x", "train/b/x"]
    path = _write(tmp_path, "x.png\n", name="amb.txt")
    with pytest.raises(ValueError, match="amb.txt.*ambiguous"):
        read_id_list(path, ids)


def test_partition_requires_exactly_one(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        partition(IDS)
    with pytest.raises(ValueError, match="exactly one"):
        partition(IDS, fraction="1/2", labeled_list=_write(tmp_path, "2007_000032\n"))
