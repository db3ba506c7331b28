"""plots: the running mean behind `loss_curve(smooth=...)`, and the files written."""

from pathlib import Path

import numpy as np
import pytest

from jaxnets import plots


def test_running_mean_is_the_trailing_window_mean():
    values = np.array([4.0, 2.0, 6.0, 8.0, 0.0])
    np.testing.assert_allclose(plots.running_mean(values, 2), [4.0, 3.0, 4.0, 7.0, 4.0])
    np.testing.assert_allclose(plots.running_mean(values, 3), [4.0, 3.0, 4.0, 16 / 3, 14 / 3])
    np.testing.assert_array_equal(plots.running_mean(values, 1), values)
    np.testing.assert_allclose(plots.running_mean(values, 100), np.cumsum(values) / np.arange(1, 6))
    with pytest.raises(ValueError, match="window"):
        plots.running_mean(values, 0)


def test_smoothed_and_paneled_plots_are_written(tmp_path):
    rng = np.random.default_rng(0)
    noisy = np.exp(-np.arange(2000) / 400) + rng.uniform(0, 0.5, 2000)
    for smooth in (None, 100):
        path = plots.loss_curve({"train": noisy, "other": noisy[::-1]},
                                str(tmp_path / f"s{smooth}.png"), smooth=smooth)
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = plots.loss_panels({"a": {"x": noisy[:100]}, "b": {"y": noisy, "z": noisy}},
                             str(tmp_path / "panels.png"), logy=True)
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
