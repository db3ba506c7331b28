"""PNG plots: loss curves, image grids (torchvision.utils.make_grid), confusion matrices.

matplotlib with the Agg backend: no display needed. Each function writes a file and returns its path.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from jaxnets import atomic


def _import_pyplot() -> None:
    # A failure is left to _pyplot's own import, which raises it where the plot is made.
    with contextlib.suppress(Exception):
        _pyplot_now()


def _pyplot_now():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@functools.cache
def _importer() -> threading.Thread:
    thread = threading.Thread(target=_import_pyplot, name="import matplotlib")
    thread.start()
    return thread


def preload() -> None:
    """Start importing matplotlib in a background thread (0.3-0.5 s), so the first plot does
    not wait for it: experiments.cli starts it for every experiment that plots, and the import
    then overlaps the data loading and the training, which mostly run outside Python's GIL."""
    _importer()


def wait_for_preload() -> None:
    """Wait until a background import `preload` started has ended (none started: return at
    once). For code about to change how the whole process imports (tensorflow_datasets)."""
    if _importer.cache_info().currsize:
        _importer().join()


def _pyplot():
    _importer().join()
    return _pyplot_now()


def _save(fig, path: str) -> str:
    """Write the figure atomically (a full disk leaves the previous PNG, not a cut-off one)."""
    try:
        with atomic.replacing(path) as tmp:
            # the format by name: the temporary file's name ends in .tmp
            fig.savefig(tmp, dpi=100, bbox_inches="tight",
                        format=os.path.splitext(path)[1].lstrip(".") or "png")
    finally:
        _pyplot().close(fig)
    return path


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of each value and the window - 1 before it (fewer at the start): same length, no lag
    beyond the window, and it starts at the first value instead of at zero."""
    values = np.asarray(values, np.float64)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


# Line styles cycled over the curves of one axis, so a curve lying on another stays visible.
_STYLES = ("solid", "dashed", "dotted", "dashdot")


def _draw_curves(ax, curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str,
                 logy: bool, smooth: int | None, first: int = 1) -> None:
    """Draw named curves on one axis; with `smooth`, each raw curve faint under its running mean."""
    for i, (name, ys) in enumerate(curves.items()):
        ys = np.asarray(ys, np.float64)
        xs = np.arange(first, first + len(ys))
        style = _STYLES[i % len(_STYLES)]
        if smooth and smooth > 1:
            (raw,) = ax.plot(xs, ys, linewidth=0.6, alpha=0.3)
            ax.plot(xs, running_mean(ys, smooth), linestyle=style, color=raw.get_color(),
                    linewidth=1.4,
                    label=f"{name}: running mean of {smooth} (raw values faint)")
        else:
            ax.plot(xs, ys, linestyle=style, label=name, linewidth=1.2 if i else 0.9)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1 or smooth:
        ax.legend()
    ax.grid(alpha=0.3)


def loss_curve(curves: Mapping[str, Sequence[float]] | Sequence[float], path: str,
               title: str = "training loss", xlabel: str = "step", ylabel: str = "loss",
               logy: bool = False, smooth: int | None = None, first: int = 1) -> str:
    """Plot one curve or several named curves (e.g. {'jaxnets': ..., 'PyTorch': ...}).

    Args:
      curves: the values, or {name: values}.
      path: the PNG to write.
      title, xlabel, ylabel: the axis texts.
      logy: logarithmic y axis.
      smooth: if > 1, draw each curve faintly with its running mean over this many values on
        top (for noisy per-step losses); None (the default) draws the raw curves only.
      first: the x of the first value (1: step/epoch 1; 0 where the tutorial counts from 0).

    Returns:
      path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    if not isinstance(curves, Mapping):
        curves = {"loss": curves}
    _draw_curves(ax, curves, xlabel, ylabel, logy, smooth, first)
    ax.set_title(title)
    return _save(fig, path)


def loss_panels(panels: Mapping[str, Mapping[str, Sequence[float]]], path: str,
                title: str = "training loss", xlabel: str = "step", ylabel: str = "loss",
                logy: bool = False) -> str:
    """Runs of different lengths side by side: one panel (own x axis) per {panel title: curves}.

    Returns:
      path.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        _draw_curves(ax, curves, xlabel, ylabel, logy, None)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: float = 0.0
              ) -> np.ndarray:
    """torchvision.utils.make_grid for NHWC arrays: tile images into one HWC image."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c),
                   pad_value, dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = r * (h + padding) + padding, k * (w + padding) + padding
        grid[y : y + h, x : x + w] = images[i]
    return grid


def image_grid(images: np.ndarray, path: str,
               labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
               nrow: int = 8, title: str | None = None) -> str:
    """Save images (NHWC, float in [0, 1] or uint8) as one grid, with optional captions: one
    label per image, or {row name: labels} for several rows (`GroundTruth:` and `Predicted:`
    lines, as the blitz prints them)."""
    plt = _pyplot()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(images, 0.0, 1.0)
    grid = make_grid(images, nrow=nrow)
    fig, ax = plt.subplots(figsize=(max(4, grid.shape[1] / 24), max(2, grid.shape[0] / 24)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid,
              cmap="gray" if grid.shape[-1] == 1 else None)
    ax.axis("off")
    if labels is not None:
        rows = labels if isinstance(labels, Mapping) else {"": labels}
        width = max(len(name) for name in rows)
        lines = [(f"{name + ':':<{width + 1}} " if name else "") + " ".join(f"{s:5s}" for s in row)
                 for name, row in rows.items()]
        ax.set_title("\n".join(lines), fontsize=9, family="monospace")
    elif title:
        ax.set_title(title)
    return _save(fig, path)


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str,
                     title: str = "confusion matrix") -> str:
    """Heat map of counts[true, predicted] with class names and the counts written in."""
    plt = _pyplot()
    cm = np.asarray(cm)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.75 * k))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > thresh else "black")
    return _save(fig, path)
