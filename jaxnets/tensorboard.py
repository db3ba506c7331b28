"""TensorBoard event files without TensorFlow: scalars, an image grid and a confusion matrix.

The counterpart of PyTorch's "Visualizing Models, Data, and Training with TensorBoard" (the
tutorials' next step, on Fashion-MNIST), written with tensorboardX (a maintained writer that
needs only numpy and protobuf); `flax.metrics.tensorboard` would import TensorFlow. View with
`tensorboard --logdir DIR` (the `tensorboard` package, no TensorFlow needed to view either).

    with tensorboard.Writer(logdir) as tb:
        tb.scalars("train/loss", history["loss"])              # one point per training step
        tb.scalar("test/accuracy", accuracy, step)
        tb.image_grid("train/images", images_nhwc_in_0_1, step=0)
        tb.confusion_matrix("test/confusion_matrix", cm, class_names, step)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from jaxnets import plots
from jaxnets.errors import ConfigError


def _uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (or uint8) -> uint8, rounded (so what is stored is exact)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


class Writer:
    """Events for one run folder (`logdir`), one event file per Writer; close() or use `with`."""

    def __init__(self, logdir: str):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError("writing TensorBoard events needs tensorboardX: "
                              "pip install tensorboardX") from None
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise ConfigError(f"TensorBoard logdir {logdir} is a file; give a folder")
        try:
            os.makedirs(logdir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"TensorBoard logdir {logdir}: cannot create it ({e.strerror}); "
                              "give a writable folder") from None
        self.logdir = logdir
        self._writer = SummaryWriter(logdir=logdir)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One value (stored as float32, TensorBoard's scalar type) at `step`."""
        self._writer.add_scalar(tag, float(value), global_step=int(step))

    def scalars(self, tag: str, values: Sequence[float], first_step: int = 1) -> None:
        """A history, one value per step: values[i] at step first_step + i."""
        for i, value in enumerate(np.asarray(values, dtype=np.float64).ravel()):
            self._writer.add_scalar(tag, float(value), global_step=first_step + i)

    def image_grid(self, tag: str, images: np.ndarray, step: int = 0, nrow: int = 8) -> None:
        """NHWC images (float in [0, 1] or uint8) tiled as torchvision's make_grid tiles them."""
        grid = plots.make_grid(_uint8(images), nrow=nrow)
        if grid.shape[-1] == 1:   # TensorBoard shows grayscale as RGB; store it that way
            grid = np.repeat(grid, 3, axis=-1)
        self._writer.add_image(tag, grid, global_step=int(step), dataformats="HWC")

    def confusion_matrix(self, tag: str, cm: np.ndarray, class_names: Sequence[str],
                         step: int = 0) -> None:
        """The confusion matrix as the same heat map jaxnets.plots draws (an image event)."""
        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            path = plots.confusion_matrix(np.asarray(cm), class_names,
                                          os.path.join(tmp, "cm.png"))
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
        self._writer.add_image(tag, pixels, global_step=int(step), dataformats="HWC")

    def flush(self) -> None:
        """Write pending events to disk now."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
