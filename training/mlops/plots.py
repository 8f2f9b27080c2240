"""Evaluation plots (matplotlib figures) logged as MLflow artifacts."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # Figure objects, not pyplot: nothing global to close, no display needed
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve


def metric_bars(models: dict[str, dict[str, float]], metrics: list[str], title: str) -> Figure:
    """Grouped bar chart comparing the same metrics across models."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    width = 0.8 / len(models)
    x = np.arange(len(metrics))
    for i, (name, values) in enumerate(models.items()):
        bars = ax.bar(x + i * width, [values[m] for m in metrics], width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x + width * (len(models) - 1) / 2, metrics)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _curve(x: np.ndarray, y: np.ndarray, style: str = "-") -> tuple[Figure, Axes]:
    """A square figure with the model's curve drawn."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(x, y, style, label="model")
    return fig, ax


def _finish(fig: Figure, ax: Axes, **labels: str) -> Figure:
    ax.set(**labels)
    ax.legend()
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    """ROC curve with the chance diagonal."""
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = _curve(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    return _finish(fig, ax, xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test cutoff)")


def pr_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    """Precision-recall curve with the base rate."""
    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = _curve(recall, precision)
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="base rate")
    return _finish(fig, ax, xlabel="recall", ylabel="precision", title="Precision-recall curve (test cutoff)")


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    """Reliability diagram: observed churn rate against mean predicted probability per quantile bin."""
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    fig, ax = _curve(predicted, observed, "o-")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    return _finish(
        fig, ax, xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration (test cutoff)"
    )


def gain_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    """Cumulative gain: share of churners reached when targeting the highest-scored share of customers."""
    order = np.argsort(-p, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum(np.asarray(y)[order]) / np.sum(y)])
    fig, ax = _curve(np.linspace(0, 1, len(gain)), gain)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random targeting")
    return _finish(
        fig,
        ax,
        xlabel="share of customers targeted",
        ylabel="share of churners reached",
        title="Gain chart (test cutoff)",
    )
