"""jaxnets.tensorboard writes events TensorBoard's own reader reads back (no TensorFlow)."""

import io
import os

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator  # the test extra's reader

from jaxnets import plots
from jaxnets import tensorboard as T
from jaxnets.errors import ConfigError


def _read(logdir):
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def _decode(image_event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_event.encoded_image_string)).convert("RGB"))


def test_scalars_images_and_confusion_matrix_read_back(tmp_path):
    rng = np.random.default_rng(0)
    losses = rng.normal(2.0, 0.5, 37)
    images = rng.random((10, 28, 28, 1)).astype(np.float32)
    cm = rng.integers(0, 50, (10, 10))
    names = [f"class{i}" for i in range(10)]
    with T.Writer(str(tmp_path)) as tb:
        tb.scalars("train/loss", losses)
        tb.scalar("test/accuracy", 0.5711, step=37)
        tb.image_grid("train/images", images, step=0, nrow=4)
        tb.confusion_matrix("test/confusion_matrix", cm, names, step=37)
    assert [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents.")]

    acc = _read(str(tmp_path))
    assert set(acc.Tags()["scalars"]) == {"train/loss", "test/accuracy"}
    loss_events = acc.Scalars("train/loss")
    assert [e.step for e in loss_events] == list(range(1, 38))
    np.testing.assert_array_equal([e.value for e in loss_events], losses.astype(np.float32))
    (accuracy,) = acc.Scalars("test/accuracy")
    assert (accuracy.step, accuracy.value) == (37, np.float32(0.5711))

    (grid_event,) = acc.Images("train/images")
    want = plots.make_grid(np.round(images * 255).astype(np.uint8), nrow=4)
    assert (grid_event.height, grid_event.width) == want.shape[:2]
    np.testing.assert_array_equal(_decode(grid_event), np.repeat(want, 3, axis=-1))

    (cm_event,) = acc.Images("test/confusion_matrix")
    assert cm_event.step == 37
    png = plots.confusion_matrix(cm, names, str(tmp_path / "cm.png"))
    np.testing.assert_array_equal(_decode(cm_event), np.asarray(Image.open(png).convert("RGB")))


def test_bad_logdir_is_a_config_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        T.Writer(str(a_file))
    with pytest.raises(ConfigError, match="cannot create"):
        T.Writer(str(a_file / "below"))
