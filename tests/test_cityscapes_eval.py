"""Predictions exported for Cityscapes are read by the official evaluator (cityscapesScripts'
evalPixelLevelSemanticLabeling), which finds them by name and scores them as cps_jax does."""

import copy
import os

import numpy as np
import pytest
from PIL import Image

from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
from cityscapesscripts.helpers.labels import id2label

from cps_jax import inference, metrics, predict
from cps_jax.data import cityscapes
from cps_jax.data.transforms import normalize

# Cityscapes label ids: evaluated classes, and ignored ones (unlabeled 0, ego vehicle 1, parking 9).
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 21, 23, 24, 26
UNLABELED, EGO, PARKING = 0, 1, 9
FRAMES = {  # city -> [(seq, frame, (height, width))]
    "aachen": [("000000", "000019", (24, 48)), ("000001", "000019", (24, 48))],
    "bochum": [("000000", "000313", (30, 40))],
}


def _label_ids(h, w, variant):
    gt = np.full((h, w), BUILDING, np.uint8)
    gt[: h // 4] = SKY
    gt[h // 2 :] = ROAD
    gt[h // 2 :, : w // 5] = SIDEWALK
    gt[h // 4 : h // 2, w // 2 :] = VEGETATION if variant else BUILDING
    gt[h // 2 : h // 2 + 5, 10:20] = CAR
    gt[h // 2 - 4 : h // 2 + 2, 24:27] = PERSON
    gt[-3:] = EGO
    gt[:, :1] = UNLABELED
    gt[h // 2 + 6 : h // 2 + 9, 30:36] = PARKING
    return gt


def _image(gt, rng):
    """Each pixel in its class's colour, with noise, and a few patches painted as another class."""
    colours = np.array([id2label[i].color for i in range(34)], np.int64)
    image = colours[gt] + rng.integers(-6, 7, gt.shape + (3,))
    image[gt.shape[0] // 2 + 1 : gt.shape[0] // 2 + 4, 2:6] = id2label[ROAD].color  # sidewalk
    image[2:5, 30:34] = id2label[BUILDING].color  # sky
    image[gt.shape[0] // 2 + 2, 12:18] = id2label[SIDEWALK].color  # car
    return np.clip(image, 0, 255).astype(np.uint8)


PALETTE = normalize(cityscapes.PALETTE[None])[0]


def nearest_colour(images, sizes=None):
    """A hand-made per-pixel "model": the train id whose palette colour is nearest."""
    return ((images[..., None, :] - PALETTE) ** 2).sum(-1).argmin(-1).astype(np.uint8)


@pytest.fixture(scope="module")
def fake_cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(0)
    pairs = []
    for city, frames in FRAMES.items():
        for k, (seq, frame, (h, w)) in enumerate(frames):
            stem = f"{city}_{seq}_{frame}"
            gt = _label_ids(h, w, variant=k % 2)
            for folder, suffix, array in [
                ("gtFine", "gtFine_labelIds", gt),
                ("leftImg8bit", "leftImg8bit", _image(gt, rng)),
            ]:
                os.makedirs(root / folder / "val" / city, exist_ok=True)
                Image.fromarray(array).save(root / folder / "val" / city / f"{stem}_{suffix}.png")
            pairs.append(str(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"))
    return root, pairs


def test_official_evaluator_reads_exported_predictions_and_agrees_with_our_metric(
    fake_cityscapes, tmp_path
):
    root, gt_files = fake_cityscapes
    files = predict.find_images(str(root / "leftImg8bit" / "val"))
    failed = predict.predict_files(
        files,
        str(tmp_path),
        nearest_colour,
        options=inference.InferenceOptions(),
        batch_size=2,
        palette=cityscapes.PALETTE,
        label_ids=cityscapes.TRAIN_ID_TO_ID,
        outputs=("labels",),
        progress=False,
    )
    assert failed == []

    # cps_jax's metric on train ids, from the images directly.
    confusion = 0
    for gt_file in gt_files:
        gt = cityscapes.ID_TO_TRAIN_ID[np.asarray(Image.open(gt_file))]
        image_file = gt_file.replace("gtFine", "leftImg8bit").replace(
            "_leftImg8bit_labelIds", "_leftImg8bit"
        )
        pred = nearest_colour(normalize(np.asarray(Image.open(image_file))))
        confusion = confusion + np.asarray(
            metrics.confusion_matrix(gt, pred, cityscapes.NUM_CLASSES)
        )
    ours = metrics.segmentation_metrics(confusion)

    # The official evaluator finds each prediction by the ground truth's name, in label ids.
    args = copy.copy(official.args)
    args.predictionPath, args.predictionWalk = str(tmp_path / "labels"), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    predictions = [official.getPrediction(args, gt) for gt in gt_files]
    assert [os.path.basename(p).split("_leftImg8bit")[0] for p in predictions] == [
        os.path.basename(g).split("_gtFine")[0] for g in gt_files
    ]
    result = official.evaluateImgLists(predictions, gt_files, args)

    assert 0.3 < ours["miou"] < 1.0  # some classes right, some confused
    assert result["averageScoreClasses"] == pytest.approx(ours["miou"], abs=1e-12)
    for train_id, label_id in enumerate(cityscapes.TRAIN_ID_TO_ID):
        score = result["classScores"][id2label[int(label_id)].name]
        if np.isnan(ours["iou"][train_id]):  # absent from ground truth and predictions: skipped
            assert np.isnan(score)
        else:
            assert score == pytest.approx(ours["iou"][train_id], abs=1e-12)
    assert np.isnan(ours["iou"]).sum() >= 10  # most of the 19 classes are absent here
