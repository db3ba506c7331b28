"""experiments.report: rows for each figure, statuses, missing data reported (not dropped)."""

from __future__ import annotations

import json

import pytest

from experiments import report
from jaxnets.errors import ConfigError


def test_report_rows_statuses_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXNETS_DATA_MIRROR", "http://127.0.0.1:9/")  # offline: fails fast
    cfg = report.Config(quick=True, out=str(tmp_path), only=("thermometer", "autograd", "cifar10"),
                        progress=False)
    out = report.run(cfg)
    rows = {(r["experiment"], r["figure"]): r for r in out["rows"]}
    epoch1 = rows[("thermometer", "training_loop epoch 1 loss")]
    assert epoch1["tutorial"] == "1763.884644" and epoch1["ours"] == "1763.884644"
    assert epoch1["status"] == "matches"
    assert epoch1["pytorch"].startswith("1763.88")  # measured with torch from the same start
    assert rows[("autograd", "x.grad after out.backward() (out = mean(3(x+2)^2))")][
        "status"] == "matches"
    cifar = rows[("cifar10", "all figures")]
    assert cifar["status"] == "not run" and "--data-dir" in cifar["note"]
    md = (tmp_path / "REPRODUCTION.md").read_text()
    assert "| thermometer | initial loss | 1763.8846 | 1763.8846 |" in md
    assert "[fit.png](thermometer/fit.png)" in md and (tmp_path / "thermometer" / "fit.png").exists()
    saved = json.loads((tmp_path / "reproduction.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(out["rows"]))
    assert saved["runs"]["cifar10"]["ok"] is False


def test_report_status_differs_when_the_figure_differs(tmp_path, monkeypatch):
    # A figure that does not match must not be reported as matching: break the thermometer's
    # learning rate and the epoch-2 loss no longer equals the book's.
    from experiments import thermometer

    real = thermometer.Config
    monkeypatch.setattr(thermometer, "Config", lambda **kw: real(**{**kw, "lr": 2e-4}))
    out = report.run(report.Config(quick=True, out=str(tmp_path), only=("thermometer",),
                                   torch=False, progress=False))
    rows = {r["figure"]: r for r in out["rows"]}
    assert rows["training_loop epoch 2 loss"]["status"] == "differs"
    assert rows["initial loss"]["status"] == "matches"


def test_unknown_experiment_is_a_config_error():
    with pytest.raises(ConfigError, match="only: 'nope' is not one of tensors"):
        report.Config(only=("nope",))
