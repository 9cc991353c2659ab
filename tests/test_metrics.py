"""Metrics against a hand-computed confusion matrix."""

import numpy as np

from cps_jax import metrics


def test_confusion_matrix_and_scores_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = np.asarray(metrics.confusion_matrix(gt, pred, 3))
    # rows gt, cols pred; the 255 pixel is skipped.
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_array_equal(cm, expected)
    scores = metrics.segmentation_metrics(cm)
    # IoU = tp / (row + col - tp): class0 1/(2+2-1), class1 2/(3+3-2), class2 1/(2+2-1)
    np.testing.assert_allclose(scores["iou"], [1 / 3, 2 / 4, 1 / 3])
    np.testing.assert_allclose(scores["miou"], (1 / 3 + 1 / 2 + 1 / 3) / 3)
    np.testing.assert_allclose(scores["pixel_accuracy"], 4 / 7)


def test_padded_examples_are_masked_and_absent_classes_skipped():
    gt = np.zeros((2, 2, 2), np.int32)
    pred = np.zeros((2, 2, 2), np.int32)
    pred[1] = 3  # the padded example predicts garbage
    cm = np.asarray(metrics.confusion_matrix(gt, pred, 4, weights=np.array([1, 0])[:, None, None]))
    assert cm.sum() == 4 and cm[0, 0] == 4
    scores = metrics.segmentation_metrics(cm)
    assert scores["miou"] == 1.0  # classes 1..3 never appear: excluded from the mean
    assert np.isnan(scores["iou"][1:]).all()
