"""The synthetic adaptation sources (GTA5, SYNTHIA-RAND-CITYSCAPES) on tiny inputs in the official
layouts (tests/fake_archives.py): label mapping pixel by pixel against tables written out here,
ids, the held-out validation split, zip and folder layouts alike, 16-bit labels, errors."""

import io
import math
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

import fake_archives as fa
from cps_jax import datasets
from cps_jax.commands import prepare as cps_prepare
from cps_jax.data import archives, cityscapes, gta5, synthia
from cps_jax.data.archives import DataError

# Cityscapes label id (GTA5's labels) -> train id, by hand from the official table; every other
# id is ignored (255).
GTA5_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
# SYNTHIA class id -> Cityscapes train id, by hand from SYNTHIA's README table: sky 10,
# building 2, road 0, sidewalk 1, fence 4, vegetation 8, pole 5, car 13, traffic sign 7,
# pedestrian 11, bicycle 18, motorcycle 17, traffic light 6, terrain 9, rider 12, truck 14, bus 15,
# train 16, wall 3; void 0, parking-slot 13, road-work 14, lanemarking 22 and unknown ids ignored.
SYNTHIA_TRAIN_IDS = {
    1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11,
    11: 18, 12: 17, 15: 6, 16: 9, 17: 12, 18: 14, 19: 15, 20: 16, 21: 3,
}  # fmt: skip
SYNTHIA_16 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle",
)  # fmt: skip


def mapped(ids: np.ndarray, table: dict) -> np.ndarray:
    out = np.full(ids.shape, 255, np.uint8)
    for source_id, train_id in table.items():
        out[ids == source_id] = train_id
    return out


def read_all(source) -> dict:
    out = {}
    for i in range(len(source)):
        ex = source[i]
        ident = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
        assert ident not in out
        out[ident] = ex
    return out


def check_examples(got: dict, arrays: dict, table: dict) -> None:
    for ident, ex in got.items():
        image, ids = arrays[ident]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (*ids.shape, 3)
        assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (*ids.shape, 1)
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["mask"][..., 0], mapped(ids, table))


def held_out(ids: list, n_val: int) -> list:
    """The ids the hold-out gives validation: the first ceil(n / 20) of one permutation, seed 0."""
    assert n_val == math.ceil(len(ids) / 20)
    return sorted(ids[i] for i in np.random.default_rng(0).permutation(len(ids))[:n_val])


def load(name: str, data_dir, manual_dir="", **fields):
    config = datasets.data_config(
        name, data_dir=str(data_dir), manual_dir=str(manual_dir), **fields
    )
    return datasets.load(config)


def test_full_set_counts_and_hold_out():
    for module, n, n_train, n_val in ((gta5, 24966, 23717, 1249), (synthia, 9400, 8930, 470)):
        assert module.NUM_IMAGES == n
        assert (module.NUM_TRAIN, module.NUM_VALIDATION) == (n_train, n_val)
        ids = [f"{k:07d}" for k in range(n)]
        split = archives.hold_out(ids, module.VALIDATION_FRACTION, module.VALIDATION_SEED, "x")
        assert (len(split["train"]), len(split["validation"])) == (n_train, n_val)
        assert split["validation"] == held_out(ids, n_val)
        assert sorted(split["train"] + split["validation"]) == ids
        again = archives.hold_out(ids, "1/20", 0, "x")
        assert again == split  # deterministic
    with pytest.raises(DataError, match="1 example"):
        archives.hold_out(["a"], "1/20", 0, "x")


# ---------------------------------------------------------------------------------------- GTA5
def test_gta5_label_table():
    np.testing.assert_array_equal(gta5.ID_TO_TRAIN_ID, mapped(np.arange(256), GTA5_TRAIN_IDS))
    assert gta5.ID_TO_TRAIN_ID is cityscapes.ID_TO_TRAIN_ID  # one table, not a copy
    assert gta5.CLASS_NAMES == cityscapes.CLASS_NAMES and len(gta5.PALETTE) == 19


@pytest.fixture(scope="module")
def gta(tmp_path_factory):
    root = tmp_path_factory.mktemp("gta5")
    manual = root / "downloads"
    manual.mkdir()
    arrays = fa.gta5(str(manual), layout="zip")
    return root, arrays, load("gta5", root / "data", manual)


def test_gta5_counts_ids_split_and_pixels(gta):
    _, arrays, data = gta
    assert data.name == "gta5" and data.num_classes == 19
    assert tuple(data.class_names) == cityscapes.CLASS_NAMES
    np.testing.assert_array_equal(data.palette, cityscapes.PALETTE)
    assert len(data.train) == 3 and len(data.validation) == 1
    validation = read_all(data.validation)
    assert sorted(validation) == held_out(fa.GTA5_IDS, 1)
    train = read_all(data.train)
    assert sorted(train) == sorted(set(fa.GTA5_IDS) - set(validation))
    check_examples({**train, **validation}, arrays, GTA5_TRAIN_IDS)
    # every id 0..35 and 255 is in the first pixels: evaluated and ignored ids both checked
    first = {**train, **validation}["00001"]["mask"][..., 0].ravel()[:37]
    assert first.tolist() == [GTA5_TRAIN_IDS.get(i, 255) for i in [*range(36), 255]]


def test_gta5_folder_layout_gives_the_same_examples(gta, tmp_path):
    _, _, zipped = gta
    fa.gta5(str(tmp_path / "GTA5"), layout="folder")
    (tmp_path / "GTA5" / "01_images.zip").write_bytes(b"not read: the folders come first")
    data = load("gta5", tmp_path / "data", tmp_path / "GTA5")
    for a, b in ((data.train, zipped.train), (data.validation, zipped.validation)):
        got, expected = read_all(a), read_all(b)
        assert sorted(got) == sorted(expected)
        for ident, ex in got.items():
            np.testing.assert_array_equal(ex["image"], expected[ident]["image"])
            np.testing.assert_array_equal(ex["mask"], expected[ident]["mask"])


def test_gta5_missing_inputs_name_the_folder(tmp_path):
    manual, data_dir = tmp_path / "dl", tmp_path / "data"
    manual.mkdir()
    with pytest.raises(DataError, match=rf"{manual}: no GTA5 data in it: expected .*01_images.zip"):
        gta5.prepare(str(data_dir), str(manual))
    with pytest.raises(DataError, match="GTA5 manual_dir .* not found"):
        gta5.prepare(str(data_dir), str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"no GTA5 manual_dir .* given \(set config.data"):
        gta5.prepare(str(data_dir), "")
    fa.gta5(str(manual), layout="zip")
    os.remove(manual / "02_labels.zip")
    with pytest.raises(DataError, match=r"02_labels.zip: not found \(the labels of 02_images.zip"):
        gta5.prepare(str(data_dir), str(manual))
    (manual / "images").mkdir()
    with pytest.raises(DataError, match=rf"{manual / 'labels'}: not found; the extracted GTA5"):
        gta5.prepare(str(data_dir), str(manual))
    assert not archives.is_prepared(gta5.builder(str(data_dir)))


def test_gta5_corrupt_files_are_named(tmp_path):
    manual, data_dir = tmp_path / "dl", tmp_path / "data"
    manual.mkdir()
    fa.gta5(str(manual), layout="zip")
    labels = manual / "01_labels.zip"
    good = labels.read_bytes()
    labels.write_bytes(b"PK\x03\x04 not a zip archive" * 10)
    with pytest.raises(DataError, match=r"01_labels.zip: not a readable GTA5 label archive"):
        gta5.prepare(str(data_dir), str(manual))
    labels.write_bytes(good[: len(good) // 2])  # truncated: the central directory is gone
    with pytest.raises(DataError, match=r"01_labels.zip: not a readable GTA5 label archive"):
        gta5.prepare(str(data_dir), str(manual))
    shutil.rmtree(manual)
    fa.gta5(str(manual), layout="folder")
    label = manual / "labels" / "00003.png"
    label.write_bytes(label.read_bytes()[:-40])  # truncated pixel data
    with pytest.raises(DataError, match=rf"{label}: not a readable image"):
        gta5.prepare(str(data_dir), str(manual))
    os.remove(label)
    with pytest.raises(DataError, match=r"labels: missing label 00003.png, the label of .*00003"):
        gta5.prepare(str(data_dir), str(manual))
    assert not archives.is_prepared(gta5.builder(str(data_dir)))


def test_gta5_pairs_of_different_sizes_are_left_out_and_named(tmp_path, capfd):
    manual, data_dir = tmp_path / "dl", tmp_path / "data"
    manual.mkdir()
    expected = fa.gta5(str(manual), layout="folder")
    for ident, hw in (("00002", (5, 7)), ("00010", (6, 8))):
        (manual / "labels" / f"{ident}.png").write_bytes(fa.encode(np.zeros(hw, np.uint8)))
    sources = gta5.sources(str(data_dir), str(manual))
    err = capfd.readouterr().err
    label, image = manual / "labels" / "00002.png", manual / "images" / "00002.png"
    assert f"left out: {label}: mask is 5x7 (HxW) but its image {image} is 25x31" in err
    assert f"{manual / 'labels' / '00010.png'}: mask is 6x8 (HxW) but its image" in err
    assert "2 of 4 GTA5 pairs differ in size and are left out" in err
    ids = {ex["id"].decode() for split in sources.values() for ex in split}
    assert ids == set(expected) - {"00002", "00010"}


def test_pair_size_check_names_every_mismatch(tmp_path):
    manual = tmp_path / "dl"
    manual.mkdir()
    fa.gta5(str(manual), layout="zip")
    fa.write_zip(
        str(manual / "02_labels.zip"),
        {"labels/00003.png": fa.encode(np.zeros((3, 4), np.uint8)), "labels/00010.png": b""},
    )
    items = gta5.index(*gta5.open_inputs(str(manual)))
    pairs = [(it.images, it.image, it.labels, it.label) for it in items]
    match = r"02_labels.zip:labels/00003.png: mask is 3x4 \(HxW\) but its image .*02_images.zip"
    with pytest.raises(DataError, match=match):
        archives.check_pair_sizes(pairs, "sizes")


# ------------------------------------------------------------------------------------- SYNTHIA
def test_synthia_label_table_and_16_classes():
    np.testing.assert_array_equal(synthia.ID_TO_TRAIN_ID, mapped(np.arange(256), SYNTHIA_TRAIN_IDS))
    assert [i for i, _, _ in synthia.SYNTHIA_CLASSES] == list(range(23))
    assert synthia.SYNTHIA_16 == SYNTHIA_16
    assert synthia.CLASS_NAMES == cityscapes.CLASS_NAMES
    assert set(synthia.SYNTHIA_16) <= set(synthia.CLASS_NAMES)


def test_synthia_16_bit_labels_are_read_exactly():
    rng = np.random.default_rng(3)
    for channels, interlace in ((3, False), (3, True), (4, False), (4, True)):
        values = rng.integers(0, 65536, (9, 13, channels)).astype(np.uint16)
        values[0, :4, 0] = [3, 256, 1027, 65535]
        data = fa.png16(values, interlace=interlace)
        np.testing.assert_array_equal(synthia.label_ids(data, "x.png"), values[..., 0])
        # Pillow alone keeps the high bytes only (the class ids, < 256, would all read 0)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), values >> 8)
    # 8-bit colour (first channel) and grey labels are read as they are
    eight = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    np.testing.assert_array_equal(synthia.label_ids(fa.encode(eight), "x"), eight[..., 0])
    np.testing.assert_array_equal(synthia.label_ids(fa.encode(eight[..., 1]), "x"), eight[..., 1])
    data = fa.png16(values)
    with pytest.raises(DataError, match="x.png: not a readable image"):
        synthia.label_ids(data[: len(data) // 2], "x.png")
    with pytest.raises(DataError, match="y.png: not a readable image"):
        synthia.label_ids(b"\x89PNG not really", "y.png")
    # ids beyond the table are ignored, not aliased to their low byte (1027 = 4 * 256 + 3, road)
    ids = np.array([[3, 22, 255, 256, 1027, 65535]], np.uint16)
    assert synthia.train_ids(ids).tolist() == [[0, 255, 255, 255, 255, 255]]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthia")
    manual = root / "downloads"
    manual.mkdir()
    arrays = fa.synthia(str(manual), layout="folder")
    return root, manual, arrays, load("synthia", root / "data", manual)


def test_synthia_counts_ids_split_and_pixels(synth):
    _, _, arrays, data = synth
    assert data.name == "synthia" and data.num_classes == 19
    assert len(data.train) == 3 and len(data.validation) == 1
    validation, train = read_all(data.validation), read_all(data.train)
    assert sorted(validation) == held_out(fa.SYNTHIA_IDS, 1)
    assert sorted(train) == sorted(set(fa.SYNTHIA_IDS) - set(validation))
    check_examples({**train, **validation}, arrays, SYNTHIA_TRAIN_IDS)
    first = {**train, **validation}["0000000"]["mask"][..., 0].ravel()[:28]
    expected = [SYNTHIA_TRAIN_IDS.get(i, 255) for i in range(23)] + [255] * 5
    assert first.tolist() == expected  # 23, 40, 255, 256, 1027: ignored


def test_synthia_zip_gives_the_same_examples(synth, tmp_path):
    _, _, _, folder = synth
    fa.synthia(str(tmp_path), layout="zip")
    data = load("synthia", tmp_path / "data", tmp_path)
    for a, b in ((data.train, folder.train), (data.validation, folder.validation)):
        got, expected = read_all(a), read_all(b)
        assert sorted(got) == sorted(expected)
        for ident, ex in got.items():
            np.testing.assert_array_equal(ex["image"], expected[ident]["image"])
            np.testing.assert_array_equal(ex["mask"], expected[ident]["mask"])


def test_synthia_restricted_to_the_16_classes(synth):
    root, _, arrays, _ = synth  # prepared already: no manual_dir needed
    data = load("synthia", root / "data", classes=synthia.SYNTHIA_16)
    assert data.class_names == SYNTHIA_16 and len(data.palette) == 16
    # SYNTHIA id -> index of the 16 classes, by hand (the table of the 16-class codebases);
    # terrain (16), truck (18) and train (20) are ignored now
    to_16 = {
        3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7,
        6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13, 12: 14, 11: 15,
    }  # fmt: skip
    check_examples({**read_all(data.train), **read_all(data.validation)}, arrays, to_16)


def test_synthia_manual_dir_may_be_the_folder_itself(synth, tmp_path):
    _, manual, _, _ = synth
    data = load("synthia", tmp_path / "data", manual / "RAND_CITYSCAPES")
    assert len(data.train) + len(data.validation) == len(fa.SYNTHIA_IDS)


def test_synthia_missing_inputs_name_the_folder(tmp_path):
    manual, data_dir = tmp_path / "dl", tmp_path / "data"
    manual.mkdir()
    with pytest.raises(DataError, match=rf"{manual / 'RAND_CITYSCAPES'}: not found .* in {manual}"):
        synthia.prepare(str(data_dir), str(manual))
    (manual / "SYNTHIA_RAND_CITYSCAPES.rar").write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(DataError, match=r"SYNTHIA_RAND_CITYSCAPES.rar: RAR .*extract it first"):
        synthia.prepare(str(data_dir), str(manual))
    fa.write_files(str(manual / "RAND_CITYSCAPES"), {"README.txt": b"nothing"})
    with pytest.raises(DataError, match=r"RAND_CITYSCAPES: no member RGB/NNNNNNN.png"):
        synthia.prepare(str(data_dir), str(manual))
    assert not archives.is_prepared(synthia.builder(str(data_dir)))


def test_synthia_corrupt_files_are_named(tmp_path):
    data_dir = tmp_path / "data"
    fa.synthia(str(tmp_path), layout="zip")
    path = tmp_path / "RAND_CITYSCAPES.zip"
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    path.write_bytes(b"PK\x03\x04 not a zip archive" * 10)
    with pytest.raises(DataError, match=r"RAND_CITYSCAPES.zip: not a readable SYNTHIA"):
        synthia.prepare(str(data_dir), str(tmp_path))
    bad = "RAND_CITYSCAPES/GT/LABELS/0000002.png"
    fa.write_zip(str(path), {**members, bad: members[bad][:-30]})  # truncated pixel data
    with pytest.raises(DataError, match=rf"RAND_CITYSCAPES.zip:{bad}: not a readable image"):
        synthia.prepare(str(data_dir), str(tmp_path))
    del members[bad]
    fa.write_zip(str(path), members)
    match = r"missing GT/LABELS/0000002.png, the label of .*zip:RAND_CITYSCAPES/RGB/0000002.png"
    with pytest.raises(DataError, match=match):
        synthia.prepare(str(data_dir), str(tmp_path))
    assert not archives.is_prepared(synthia.builder(str(data_dir)))


def test_synthia_size_mismatch_names_both_files(tmp_path):
    fa.synthia(str(tmp_path), layout="folder")
    root = tmp_path / "RAND_CITYSCAPES"
    label = root / "GT" / "LABELS" / "0000001.png"
    label.write_bytes(fa.png16(np.zeros((4, 6, 3), np.uint16)))
    image = root / "RGB" / "0000001.png"
    with pytest.raises(DataError, match=rf"{label}: mask is 4x6 \(HxW\) but its image {image}"):
        synthia.prepare(str(tmp_path / "data"), str(tmp_path))


# --------------------------------------------------------------------------------- cps-prepare
def test_prepare_by_name(gta, synth, capsys):
    for name, fixture in (("gta5", gta), ("synthia", synth)):
        cps_prepare.prepare_dataset(name, data_dir=str(fixture[0] / "data"))  # prepared already
        assert f"{name}: 3 train, 1 validation examples" in capsys.readouterr().out
    assert {"gta5", "synthia"} <= set(datasets.NAMES)
