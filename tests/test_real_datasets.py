"""The real data-set builders (Cityscapes, VOC aug, image_folder) on tiny archives in the official
layouts (tests/fake_archives.py): counts, ids, label mapping, pixel-exact read-back, errors."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.io

import fake_archives as fa
from cps_jax import datasets
from cps_jax.commands import evaluate as cps_eval
from cps_jax.commands import prepare as cps_prepare
from cps_jax.errors import ConfigError
from cps_jax.data import archives, cityscapes, partitions, voc
from cps_jax.data.archives import DataError

# Cityscapes label id -> train id, written out by hand from the official table (labels.py);
# every other id is ignored (255).
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def expected_train_ids(label_ids: np.ndarray) -> np.ndarray:
    out = np.full(label_ids.shape, 255, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        out[label_ids == label_id] = train_id
    return out


def read_all(source) -> dict:
    """{id: example} of a random-access source."""
    out = {}
    for i in range(len(source)):
        ex = source[i]
        ident = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
        assert ident not in out
        out[ident] = ex
    return out


def check_example(ex, image, mask):
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (*mask.shape, 3)
    assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (*mask.shape, 1)
    np.testing.assert_array_equal(ex["image"], image)
    np.testing.assert_array_equal(ex["mask"][..., 0], mask)


# ------------------------------------------------------------------------- Cityscapes label table
def test_cityscapes_label_table():
    table = cityscapes.ID_TO_TRAIN_ID
    assert table.shape == (256,) and table.dtype == np.uint8
    assert table[:7].tolist() == [255] * 7  # unlabeled .. ground
    assert table[7] == 0 and table[26] == 13 and table[33] == 18  # road, car, bicycle
    assert table[9] == table[10] == table[14] == table[29] == table[30] == 255  # parking, ...
    assert (table[34:] == 255).all()
    np.testing.assert_array_equal(table, expected_train_ids(np.arange(256)))
    assert cityscapes.TRAIN_ID_TO_ID.tolist() == sorted(CITYSCAPES_TRAIN_IDS)
    np.testing.assert_array_equal(table[cityscapes.TRAIN_ID_TO_ID], np.arange(19))
    assert len(cityscapes.CLASS_NAMES) == 19 == len(cityscapes.PALETTE)
    assert cityscapes.CLASS_NAMES[13] == "car" and cityscapes.CLASS_NAMES[6] == "traffic_light"
    assert tuple(cityscapes.PALETTE[0]) == (128, 64, 128) and tuple(cityscapes.PALETTE[18]) == (
        119,
        11,
        32,
    )


def test_cityscapes_table_equals_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels").labels
    assert [(lab.name, lab.id, lab.trainId, lab.category, tuple(lab.color)) for lab in labels] == [
        tuple(lab) for lab in cityscapes.LABELS
    ]


# ------------------------------------------------------------------------------------ Cityscapes
@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    manual = root / "downloads"
    manual.mkdir()
    arrays = fa.cityscapes(str(manual))
    data = datasets.load(
        datasets.data_config("cityscapes", data_dir=str(root / "data"), manual_dir=str(manual))
    )
    return root, manual, arrays, data


def test_cityscapes_counts_ids_and_pixels(city):
    _, _, arrays, data = city
    assert data.name == "cityscapes" and data.num_classes == 19
    assert len(data.train) == 4 and len(data.validation) == 2
    assert sorted(data.train_ids()) == [
        "aachen/aachen_000000_000019",
        "aachen/aachen_000001_000020",
        "bochum/bochum_000000_000019",
        "bochum/bochum_000001_000020",
    ]
    for split, source in (("train", data.train), ("validation", data.validation)):
        got = read_all(source)
        assert sorted(got) == sorted(arrays[split])
        for ident, (image, label_ids) in arrays[split].items():
            check_example(got[ident], image, expected_train_ids(label_ids))
    # every label id occurs in the fake masks: ignore classes and evaluated ones both checked
    first = read_all(data.train)["aachen/aachen_000000_000019"]["mask"][..., 0].ravel()
    assert first[:34].tolist() == [expected_train_ids(np.array(i)).item() for i in range(34)]


def test_cityscapes_reference_list_files_resolve(city, tmp_path):
    _, _, _, data = city
    ids = data.train_ids()
    path = tmp_path / "labeled.txt"
    path.write_text(
        "leftImg8bit/train/aachen/aachen_000001_000020_leftImg8bit.png "
        "gtFine/train/aachen/aachen_000001_000020_gtFine_labelTrainIds.png\n"
        "bochum/bochum_000000_000019\n"
    )
    labeled = partitions.read_id_list(str(path), ids)
    assert sorted(ids[i] for i in labeled) == [
        "aachen/aachen_000001_000020",
        "bochum/bochum_000000_000019",
    ]


def test_cityscapes_prepared_is_reused_without_archives(city):
    root, _, arrays, _ = city
    again = datasets.load(datasets.data_config("cityscapes", data_dir=str(root / "data")))
    assert sorted(again.train_ids()) == sorted(arrays["train"])


def test_cityscapes_prepared_by_tfds_builder_is_read(city, tmp_path):
    _, _, arrays, _ = city
    fa.tfds_cityscapes(str(tmp_path), arrays)
    data = datasets.load(datasets.data_config("cityscapes", data_dir=str(tmp_path)))
    for split, source in (("train", data.train), ("validation", data.validation)):
        got = read_all(source)
        assert sorted(got) == sorted(arrays[split])  # 'city/stem' ids, as from the zips
        for ident, (image, label_ids) in arrays[split].items():
            check_example(got[ident], image, expected_train_ids(label_ids))


def test_cityscapes_errors_name_the_file(tmp_path):
    manual = tmp_path / "dl"
    manual.mkdir()
    with pytest.raises(DataError, match="leftImg8bit_trainvaltest.zip: not found"):
        cityscapes.prepare(str(tmp_path / "data"), str(manual))
    fa.cityscapes(str(manual))
    labels = manual / "gtFine_trainvaltest.zip"
    # a corrupt zip: garbage bytes
    labels.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    with pytest.raises(DataError, match=r"gtFine_trainvaltest.zip: not a readable"):
        cityscapes.prepare(str(tmp_path / "data"), str(manual))
    # a zip without the expected members
    fa.write_zip(str(labels), {"gtFine/README": b"nothing here"})
    with pytest.raises(DataError, match=r"gtFine_trainvaltest.zip: no member .*_gtFine_labelIds"):
        cityscapes.prepare(str(tmp_path / "data"), str(manual))
    # a label that lacks for one image
    fa.write_zip(
        str(labels),
        {
            "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png": fa.encode(
                np.zeros((2, 2), np.uint8)
            )
        },
    )
    with pytest.raises(DataError, match=r"missing gtFine/train/aachen/aachen_000001_000020"):
        cityscapes.prepare(str(tmp_path / "data"), str(manual))
    # a mask of another size than its image
    fa.cityscapes(str(manual))
    with zipfile.ZipFile(labels) as z:
        members = {n: z.read(n) for n in z.namelist()}
    bad = "gtFine/val/frankfurt/frankfurt_000001_000020_gtFine_labelIds.png"
    members[bad] = fa.encode(np.zeros((3, 5), np.uint8))
    fa.write_zip(str(labels), members)
    with pytest.raises(DataError, match=rf"{bad}: mask is 3x5 \(HxW\) but its image .* is 15x26"):
        cityscapes.prepare(str(tmp_path / "data"), str(manual))
    assert not archives.is_prepared(cityscapes.builder(str(tmp_path / "data")))


# ------------------------------------------------------------------------------------------- VOC
def test_voc_palette_is_the_official_one():
    assert voc.PALETTE.shape == (21, 3) and voc.NUM_CLASSES == 21
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128)}
    expected.update({15: (192, 128, 128), 20: (0, 64, 128)})
    for k, rgb in expected.items():
        assert tuple(voc.PALETTE[k]) == rgb, k
    assert tuple(voc.color_map()[255]) == (224, 224, 192)  # the boundary colour
    assert voc.CLASS_NAMES[15] == "person" and voc.CLASS_NAMES[0] == "background"


def test_voc_train_aug_composition():
    # (VOC train ∪ SBD train ∪ SBD val) minus VOC val
    assert voc.train_aug_ids(["a", "b"], ["c"], ["b", "c", "d"]) == ["a", "b", "d"]
    assert voc.train_aug_ids(fa.VOC_TRAIN, fa.VOC_VAL, fa.SBD_TRAIN + fa.SBD_VAL) == fa.TRAIN_AUG


@pytest.mark.parametrize("extra", ["sbd", "aug"])
def test_voc_aug_counts_ids_masks_and_pixels(tmp_path, extra):
    arrays = fa.voc(str(tmp_path), sbd=extra == "sbd", aug=extra == "aug")
    data = datasets.load(
        datasets.data_config("voc_aug", data_dir=str(tmp_path / "data"), manual_dir=str(tmp_path))
    )
    assert data.name == "voc_aug" and data.num_classes == 21
    assert sorted(data.train_ids()) == fa.TRAIN_AUG
    for split, source, ids in (
        ("train", data.train, fa.TRAIN_AUG),
        ("validation", data.validation, fa.VOC_VAL),
    ):
        got = read_all(source)
        assert sorted(got) == sorted(ids), split
        for ident in ids:
            # VOC's own mask (palette indices, 255 boundary kept) where VOC has one, else SBD/Aug
            mask = arrays["voc"][ident] if ident in arrays["voc"] else arrays[extra][ident]
            image = fa.decode(arrays["jpeg"][ident])  # the original JPEG's pixels
            check_example(got[ident], image, mask)
    boundary = read_all(data.train)["2007_000039"]["mask"][0, :, 0]
    assert (boundary == 255).all()  # VOC's boundary row, not SBD's mask of the same image


def test_voc_reference_list_files_resolve(tmp_path):
    ids = fa.TRAIN_AUG
    path = tmp_path / "1-8.txt"
    path.write_text(
        "JPEGImages/2008_000004.jpg SegmentationClassAug/2008_000004.png\n2007_000039\n"
    )
    labeled = partitions.read_id_list(str(path), ids)
    assert [ids[i] for i in labeled] == ["2007_000039", "2008_000004"]


def test_voc_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="VOCtrainval_11-May-2012.tar: not found"):
        voc.prepare(str(tmp_path / "data"), str(tmp_path))
    fa.voc(str(tmp_path))
    tgz = tmp_path / "benchmark.tgz"
    tgz.write_bytes(tgz.read_bytes()[:200])  # truncated: a corrupt gzip stream
    with pytest.raises(DataError, match=r"benchmark.tgz: not a readable SBD archive"):
        voc.prepare(str(tmp_path / "data"), str(tmp_path))
    os.remove(tgz)
    with pytest.raises(DataError, match="benchmark.tgz: not found"):
        voc.prepare(str(tmp_path / "data"), str(tmp_path))
    # a .mat file without GTcls
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"something": np.zeros((2, 2))})
    fa.write_tar(
        str(tgz),
        {
            "benchmark_RELEASE/dataset/train.txt": b"2008_000004\n",
            "benchmark_RELEASE/dataset/val.txt": b"",
            "benchmark_RELEASE/dataset/cls/2008_000004.mat": buf.getvalue(),
        },
        "w:gz",
    )
    with pytest.raises(DataError, match=r"cls/2008_000004.mat: not an SBD class mask"):
        voc.prepare(str(tmp_path / "data"), str(tmp_path))


def test_corrupt_tar_member_names_archive_and_member(tmp_path):
    path = fa.write_tar(str(tmp_path / "a.tar"), {"x/one.txt": b"1" * 5000, "x/two.txt": b"2"})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:1500])  # the header of one.txt survives, its data does not
    with pytest.raises(DataError, match=r"a.tar"):
        with archives.Archive(path) as archive:
            archive.read("x/one.txt")
    with archives.Archive(fa.write_tar(str(tmp_path / "b.tar"), {"k": b"v"})) as archive:
        with pytest.raises(DataError, match=r"b.tar: missing member 'nope'"):
            archive.read("nope")


# ---------------------------------------------------------------------------------- image_folder
def folder_config(tmp_path, folder, **fields):
    return datasets.data_config(
        "image_folder", data_dir=str(tmp_path / "data"), folder=str(folder), **fields
    )


def test_image_folder_held_out_split_unlabeled_and_classes(tmp_path):
    folder = tmp_path / "mine"
    arrays = fa.image_folder(str(folder), num_images=5)
    data = datasets.load(folder_config(tmp_path, folder, val_fraction="1/5", val_seed=3))
    assert data.class_names == ("background", "crack", "stain")
    np.testing.assert_array_equal(data.palette, [[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    # the held-out share: ceil(5 / 5) = 1, drawn from the sorted ids with the seed
    ids = sorted(arrays["images"])
    held, kept = partitions.split_labeled(5, "1/5", 3)
    assert sorted(read_all(data.validation)) == [ids[i] for i in held]
    assert sorted(data.train_ids()) == [ids[i] for i in kept]
    assert "site_b/img_00" in ids  # ids keep sub-folders
    for source in (data.train, data.validation):
        for ident, ex in read_all(source).items():
            mask = arrays["masks"][ident]
            check_example(ex, arrays["images"][ident], np.where(mask == 9, 255, mask))
    # unlabeled/: every pixel ignored, and only in the unlabeled stream's pool
    got = read_all(data.unlabeled)
    assert sorted(got) == ["u_0", "u_1"]
    for ident, ex in got.items():
        check_example(ex, arrays["unlabeled"][ident], np.full(ex["mask"].shape[:2], 255))
    pool, indices = data.unlabeled_pool(np.array([1, 3]))
    pooled = [pool[int(i)]["id"] for i in indices]
    assert pooled == [
        data.train[1]["id"],
        data.train[3]["id"],
        data.unlabeled[0]["id"],
        data.unlabeled[1]["id"],
    ]


def test_image_folder_val_folder(tmp_path):
    folder = tmp_path / "mine"
    arrays = fa.image_folder(str(folder), num_images=4, val=True)
    data = datasets.load(folder_config(tmp_path, folder))
    assert sorted(data.train_ids()) == sorted(arrays["images"])
    got = read_all(data.validation)
    assert sorted(got) == ["v_0", "v_1"]
    for ident, ex in got.items():
        mask = arrays["val_masks"][ident]
        check_example(ex, arrays["val_images"][ident], np.where(mask == 9, 255, mask))


def test_image_folder_errors_name_the_file(tmp_path):
    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=4)
    load = lambda: datasets.load(folder_config(tmp_path, folder))  # noqa: E731
    classes = folder / "classes.json"
    classes.write_text('{"classes": [{"name": "a", "color": [1, 2]}]}')
    with pytest.raises(DataError, match=r'classes.json: "classes"\[0\] \("a"\): "color"'):
        load()
    classes.write_text(json.dumps({**fa.CLASSES, "ignore_idx": 9}))
    misspelt = r'classes.json: unknown key "ignore_idx" \(did you mean "ignore_index"\?\)'
    with pytest.raises(DataError, match=misspelt):
        load()
    one = {**fa.CLASSES["classes"][0], "colour": [1, 2, 3]}
    classes.write_text(json.dumps({**fa.CLASSES, "classes": [one]}))
    with pytest.raises(DataError, match=r'"classes"\[0\] \("background"\): unknown key "colour"'):
        load()
    classes.write_text(json.dumps(fa.CLASSES))
    mask = folder / "masks" / "img_00.png"
    mask.write_bytes(fa.encode(np.zeros((3, 3), np.uint8)))
    with pytest.raises(DataError, match=r"img_00.png: mask is 3x3 \(HxW\) but its image"):
        load()
    mask.write_bytes(fa.encode(np.full((9, 14), 7, np.uint8)))
    with pytest.raises(DataError, match=r"img_00.png: mask values \[7\] are neither a class"):
        load()
    os.remove(mask)
    with pytest.raises(DataError, match=r"img_00.png: no mask"):
        load()
    (folder / "masks" / "img_00.jpg").write_bytes(fa.encode(np.zeros((9, 14), np.uint8), "JPEG"))
    with pytest.raises(DataError, match=r"no mask .* img_00.jpg is not used: JPEG would corrupt"):
        load()
    with pytest.raises(DataError, match="image_folder folder"):
        datasets.load(datasets.data_config("image_folder", data_dir=str(tmp_path / "data")))


# ---------------------------------------------------------------------------------- partitions
@pytest.mark.parametrize(
    "num_train, counts",
    [(voc.NUM_TRAIN_AUG, [662, 1323, 2646, 5291]), (cityscapes.NUM_TRAIN, [186, 372, 744, 1488])],
)
def test_paper_partition_counts_for_the_real_sizes(num_train, counts):
    ids = [f"{k:06d}" for k in range(num_train)]
    previous = set()
    for fraction, count in zip(["1/16", "1/8", "1/4", "1/2"], counts):
        labeled, unlabeled = partitions.partition(ids, fraction=fraction, seed=0)
        assert len(labeled) == count and len(unlabeled) == num_train - count
        assert previous <= set(labeled.tolist())  # nested
        previous = set(labeled.tolist())


# ------------------------------------------------------------------------------ cps-prepare CLI
def test_prepare_by_name(tmp_path, capsys):
    fa.image_folder(str(tmp_path / "mine"), num_images=3)
    data = cps_prepare.prepare_dataset(
        "image_folder", data_dir=str(tmp_path / "d"), folder=str(tmp_path / "mine"), manual_dir=None
    )
    assert len(data.train) + len(data.validation) == 3
    assert (
        "image_folder: 2 train, 1 validation, 2 unlabeled-only examples" in capsys.readouterr().out
    )
    with pytest.raises(ConfigError, match="unknown data set 'voc'"):
        cps_prepare.prepare_dataset("voc")


def test_prepare_command_reports_a_missing_archive(tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "from cps_jax.commands.prepare import main; main()",
        "cityscapes",
        f"--manual_dir={tmp_path}",
        f"--data_dir={tmp_path / 'data'}",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert f"error: {tmp_path / 'leftImg8bit_trainvaltest.zip'}: not found" in run.stderr
    assert "Traceback" not in run.stderr


def test_unlabeled_only_images_feed_the_unlabeled_stream(tmp_path):
    from configs import demo
    from cps_jax import input_pipeline

    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=4, val=True)
    data = datasets.load(folder_config(tmp_path, folder))
    config = demo.get_config("runlocal")
    config.data.crop_size = (8, 8)
    config.data.labeled_fraction = "1"  # every image with a mask is labeled ...
    batch = next(iter(input_pipeline.train_dataset(config, data)))
    assert (batch["mask_l"] != 255).any()
    assert (batch["mask_u"] == 255).all()  # ... so the unlabeled stream is unlabeled/ alone


@pytest.mark.slow
def test_configs_folder_trains_and_evaluates_a_users_folder_from_the_command_line(tmp_path):
    import cli_runs

    folder = tmp_path / "mine"
    fa.image_folder(str(folder), num_images=6)
    workdir = str(tmp_path / "run")
    config = f"configs/folder.py:path={folder},runlocal"
    flags = ["--config.total_steps=2", "--config.data.val_fraction=1/3"]
    out = cli_runs.run("train", *cli_runs.train_args(workdir, *flags, config=config))
    assert out.returncode == 0, out.stderr[-3000:]
    trained = json.load(open(os.path.join(workdir, "results.json")))
    assert trained["class_names"] == ["background", "crack", "stain"]
    out = cli_runs.run("eval", f"--config={config}", f"--workdir={workdir}", *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    evaluated = json.load(open(os.path.join(workdir, "eval_validation_2.json")))
    assert evaluated["left"]["miou"] == pytest.approx(trained["left"]["miou"])


def test_every_command_loads_data_on_process_zero_first(monkeypatch, tmp_path):
    """cps-train, cps-eval and cps-prepare go through one guard, so that hosts sharing a data
    folder never prepare it at the same time."""
    from cps_jax import distributed, trainer
    from configs import demo

    calls = []

    def recording(fn, name):
        calls.append(name)
        return fn()

    monkeypatch.setattr(distributed, "process_zero_first", recording)
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path / "data")
    cps_prepare.prepare(config)
    assert calls == ["prepare data"]
    trainer.Trainer(config, str(tmp_path / "run"))
    assert calls == ["prepare data"] * 2
    with pytest.raises(FileNotFoundError):  # no checkpoint yet: the data come first
        cps_eval.evaluate_checkpoint(config, str(tmp_path / "run"))
    assert calls == ["prepare data"] * 3
