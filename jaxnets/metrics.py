"""Classification metrics: accuracy, confusion matrix, per-class accuracy (numpy, host side)."""

from __future__ import annotations

import numpy as np


def predictions(logits) -> np.ndarray:
    """argmax over classes, like torch.max(outputs, 1)[1]."""
    return np.asarray(logits).argmax(axis=-1)


def accuracy(logits, labels) -> float:
    """Fraction of correct predictions."""
    labels = np.asarray(labels)
    return float((predictions(logits) == labels).mean()) if labels.size else float("nan")


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (NaN for a class with no examples)."""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / totals
