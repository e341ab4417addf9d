"""Evaluation metrics on a hand-checked example."""

import numpy as np
import pytest

from vispipe.classify.evaluate import compute_metrics, report_rows, report_text


def one_hot_logits(pred, k, second=None):
    logits = np.zeros((len(pred), k))
    logits[np.arange(len(pred)), pred] = 5.0
    if second is not None:
        logits[np.arange(len(pred)), second] = 2.0
    return logits


def test_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    m = compute_metrics(one_hot_logits(pred, 3), labels, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["top1"] == pytest.approx(4 / 6)
    a, b, c = (m["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["accuracy"], a["support"]) == (
        1.0,
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
        3,
    )
    assert (b["precision"], b["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (c["precision"], c["recall"]) == (pytest.approx(0.5), 1.0)
    assert c["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_top5_counts_the_five_best():
    k = 8
    labels = np.array([0, 1, 2, 3])
    logits = np.tile(np.arange(k, dtype=float)[::-1], (4, 1))  # ranking 0 > 1 > ... > 7
    logits[3] = np.arange(k)  # label 3 ranks 5th from the top in row 3 -> inside top-5
    m = compute_metrics(logits, labels, [str(i) for i in range(k)])
    assert m["top1"] == pytest.approx(1 / 4)
    assert m["top5"] == pytest.approx(1.0)
    logits[3] = np.arange(k)[::-1]
    logits[3, 3] = -1  # now last
    assert compute_metrics(logits, labels, [str(i) for i in range(k)])["top5"] == pytest.approx(3 / 4)


def test_report_text_and_rows():
    labels = np.array([0, 1, 1])
    m = compute_metrics(one_hot_logits(np.array([0, 1, 0]), 3), labels, ["cat", "dog", "frog"])
    text = report_text(one_hot_logits(np.array([0, 1, 0]), 3), labels, ["cat", "dog", "frog"], m)
    assert "precision" in text and "cat" in text and "top-5 accuracy" in text
    rows = report_rows(m)
    assert [r["class"] for r in rows] == ["cat", "dog", "frog", "top1_accuracy", "top5_accuracy"]
    assert rows[1]["recall"] == 0.5
