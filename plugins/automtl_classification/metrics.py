"""Classification metrics on numpy arrays: what ``evaluate`` reports and ``metric:`` chooses from.

Accuracy, balanced accuracy and macro F1 come from one confusion matrix;
AUC from scikit-learn (binary, or macro one-vs-rest over the classes present
with both labels); log loss from the probability of the true class.
"""

from __future__ import annotations

import numpy as np

from automtl.api import Metric

SINGLE = (
    Metric("accuracy", "maximize", "share of rows whose most probable class is right"),
    Metric("balanced_accuracy", "maximize", "mean recall over the classes (a dominant class counts once)"),
    Metric("log_loss", "minimize", "cross-entropy of the predicted probabilities (ranked as skill over class "
           "frequencies: 1 - log_loss / their entropy)"),
    Metric("auc", "maximize", "area under the ROC curve (several classes: macro one-vs-rest)"),
    Metric("f1_macro", "maximize", "F1 averaged over the classes"),
)
MULTILABEL = (
    Metric("f1_micro", "maximize", "F1 over every (row, label) decision"),
    Metric("f1_macro", "maximize", "F1 averaged over the labels"),
    Metric("subset_accuracy", "maximize", "share of rows whose whole label set is right"),
    Metric("log_loss", "minimize", "mean binary cross-entropy over the labels (ranked as skill over label "
           "frequencies)"),
)
EPS = 1e-12


def single_label(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every single-label metric of class probabilities ``probs`` ``[n, k]`` against class ids ``y``."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    truth, guessed, right = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    present = truth > 0
    recall = np.divide(right, truth, out=np.zeros(k), where=present)
    precision = np.divide(right, guessed, out=np.zeros(k), where=guessed > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    seen = present | (guessed > 0)  # as scikit-learn: classes in the labels or the predictions
    p_true = probs[np.arange(len(y)), y]
    return {
        "accuracy": float(right.sum() / len(y)),
        "balanced_accuracy": float(recall[present].mean()),
        "log_loss": float(-np.log(np.clip(p_true, EPS, 1.0)).mean()),
        "auc": auc(probs, y),
        "f1_macro": float(f1[seen].mean()),
    }


def auc(probs: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC: binary on the second class's probability; else the mean of one-vs-rest AUCs over the
    classes that have positive and negative rows here (NaN when none has)."""
    from sklearn.metrics import roc_auc_score

    k = probs.shape[1]
    classes = [1] if k == 2 else range(k)
    values = []
    for c in classes:
        positive = y == c
        if positive.any() and not positive.all():
            values.append(roc_auc_score(positive, probs[:, c]))
    return float(np.mean(values)) if values else float("nan")


def multilabel(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every multi-label metric of per-label probabilities against 0/1 targets (both ``[n, labels]``)."""
    pred, truth = probs > 0.5, y > 0.5
    tp = (pred & truth).sum(axis=0).astype(np.float64)
    denom = (pred.sum(axis=0) + truth.sum(axis=0)).astype(np.float64)
    per_label = np.divide(2 * tp, denom, out=np.ones_like(tp), where=denom > 0)
    p = np.clip(probs, EPS, 1 - EPS)
    bce = -(truth * np.log(p) + (~truth) * np.log1p(-p))
    return {
        "f1_micro": float(2 * tp.sum() / denom.sum()) if denom.sum() else 1.0,
        "f1_macro": float(per_label.mean()),
        "subset_accuracy": float((pred == truth).all(axis=1).mean()),
        "log_loss": float(bce.mean()),
    }


def entropy(frequencies: np.ndarray, multilabel_rates: bool = False) -> float:
    """The log loss of predicting these frequencies on rows that follow them: class frequencies
    (they sum to 1), or each label's positive rate (``multilabel_rates``: the mean binary entropy)."""
    p = np.clip(np.asarray(frequencies, np.float64), EPS, 1 - EPS)
    if multilabel_rates:
        return float((-(p * np.log(p) + (1 - p) * np.log1p(-p))).mean())
    return float(-(p * np.log(p)).sum())
