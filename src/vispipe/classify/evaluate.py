"""Metrics of a trained classifier on the test split (scikit-learn does the counting).

scikit-learn is imported where it counts, not at the top: the training scripts import this module
too, and would otherwise pay about a second of import per run for nothing."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Top-1/top-5, confusion matrix and per-class precision/recall/F1/accuracy."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    k = len(classes)
    ids = list(range(k))
    probs = softmax(logits.astype(np.float64))
    pred = probs.argmax(1)
    cm = confusion_matrix(labels, pred, labels=ids)
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            # per-class accuracy as the seed reports it: correct / images of the class (= recall)
            "accuracy": float(cm[i, i] / cm[i].sum()) if cm[i].sum() else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "top1": float(accuracy_score(labels, pred)),
        # with five classes or fewer, top-5 is trivially 1
        "top5": float(top_k_accuracy_score(labels, probs, k=5, labels=ids)) if k > 5 else 1.0,
        "n_test": int(len(labels)),
        "confusion": cm.tolist(),
        "per_class": per_class,
        "macro_f1": float(np.mean(f1)),
    }


def report_text(logits: np.ndarray, labels: np.ndarray, classes: list[str], metrics: dict) -> str:
    """scikit-learn's classification report plus top-1/top-5 and per-class accuracy."""
    from sklearn.metrics import classification_report

    pred = logits.argmax(1)
    text = classification_report(
        labels, pred, labels=list(range(len(classes))), target_names=classes, digits=4, zero_division=0
    )
    lines = [text.rstrip(), "", f"top-1 accuracy: {metrics['top1']:.4f}", f"top-5 accuracy: {metrics['top5']:.4f}", ""]
    lines.append("per-class accuracy:")
    lines += [f"  {name:>12s}  {m['accuracy']:.4f}" for name, m in metrics["per_class"].items()]
    return "\n".join(lines) + "\n"


def report_rows(metrics: dict) -> list[dict]:
    """Rows of classification_report.csv: one per class, then the overall lines."""
    rows = [
        {"class": name, **{k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}}
        for name, m in metrics["per_class"].items()
    ]
    n = metrics["n_test"]
    rows.append({"class": "top1_accuracy", "accuracy": round(metrics["top1"], 6), "support": n})
    rows.append({"class": "top5_accuracy", "accuracy": round(metrics["top5"], 6), "support": n})
    return rows
