"""experiments.report: rows for each figure, statuses, missing data reported (not dropped)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import pytest

from experiments import report
from jaxnets.errors import ConfigError
from jaxnets.options import RunOptions, TrainOptions


def test_report_rows_statuses_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXNETS_DATA_MIRROR", "http://127.0.0.1:9/")  # offline: fails fast
    cfg = report.Config(quick=True, only=("thermometer", "autograd", "cifar10"),
                        options=RunOptions(out=str(tmp_path), progress=False))
    out = report.run(cfg)
    rows = {(r["experiment"], r["figure"]): r for r in out["rows"]}
    epoch1 = rows[("thermometer", "training_loop epoch 1 loss")]
    assert epoch1["tutorial"] == "1763.884644" and epoch1["ours"] == "1763.884644"
    assert epoch1["status"] == "matches"
    assert epoch1["pytorch"].startswith("1763.88")  # measured with torch from the same start
    assert rows[("autograd", "x.grad after out.backward() (out = mean(3(x+2)^2))")][
        "status"] == "matches"
    cifar = rows[("cifar10", "all figures")]
    assert cifar["status"] == "not run" and "data_dir" in cifar["note"]
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

    @dataclasses.dataclass(frozen=True)
    class Broken(thermometer.Config):
        lr: float = 2e-4

    monkeypatch.setattr(thermometer, "Config", Broken)
    out = report.run(report.Config(quick=True, only=("thermometer",), torch=False,
                                   options=RunOptions(out=str(tmp_path), progress=False)))
    rows = {r["figure"]: r for r in out["rows"]}
    assert rows["training_loop epoch 2 loss"]["status"] == "differs"
    assert rows["initial loss"]["status"] == "matches"


def test_unknown_experiment_is_a_config_error():
    with pytest.raises(ConfigError, match="only: 'nope' is not one of autograd, cifar10"):
        report.Config(only=("nope",))


# ------------------------------------------------------------------ distributions over seeds
def test_mann_whitney_without_scipy_matches_scipys_asymptotic_test(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    a = [37.1, 29.4, 44.0, 31.2, 48.1, 27.3, 35.5, 40.2, 33.3, 36.0]
    b = [36.1, 24.4, 49.6, 30.0, 41.7, 28.8, 33.3, 39.0, 35.2, 38.4]  # one tie with a (33.3)
    with_scipy = report.mann_whitney(a, b)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `from scipy.stats import` fails
    u, p = report.mann_whitney(a, b)
    want = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(want.statistic) and p == pytest.approx(want.pvalue, rel=1e-9)
    assert with_scipy[0] == u and abs(with_scipy[1] - p) < 0.02  # exact vs normal approximation
    assert report.mann_whitney([1, 2, 3], [10, 11, 12])[1] < report.mann_whitney(a, b)[1]


def test_summary_and_its_text():
    s = report.summary([30.0, 40.0, 35.0])
    assert (s["mean"], s["min"], s["max"], s["n"]) == (35.0, 30.0, 40.0, 3)
    assert s["sd"] == pytest.approx(5.0)  # sample sd (ddof 1)
    assert report.fmt_summary(s) == "35.00 +- 5.00% (30.00-40.00), n = 3"


@pytest.mark.slow
def test_seeds_mode_runs_both_frameworks_per_seed(tmp_path, monkeypatch, fashion):
    pytest.importorskip("torch")
    from experiments import mnist

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXNETS_DATA_MIRROR", "http://127.0.0.1:9/")  # offline: fails fast

    monkeypatch.setattr(report, "QUICK_MNIST_STEPS", 30)
    cfg = report.Config(quick=True, only=("autograd",), seeds=2,
                        options=RunOptions(out=str(tmp_path), progress=False))
    out = report.run(cfg)
    study = out["seed_study"]
    assert study["steps"] == 30 and study["seeds"] == 2
    for optimizer in ("sgd", "adam"):
        fig = study["figures"][f"mnist/{optimizer}"]
        ours, theirs = fig["jaxnets"]["values"], fig["pytorch"]["values"]
        assert len(ours) == len(theirs) == 2 and ours[0] != ours[1]  # the seed matters
        assert 0 <= fig["p"] <= 1
        # seed s of the study is `experiments.mnist --seed s` with the same steps
        one = mnist.run(mnist.Config(optimizer=optimizer, seed=1, steps=30, options=TrainOptions(
            out=str(tmp_path / optimizer), progress=False)))
        assert ours[1] == pytest.approx(100 * one["test_accuracy"])
        # ...and PyTorch's is the seed's loop from torch.manual_seed(s), reproducibly
        from reference import seeds

        train_set, test_set, _ = mnist.load_data(mnist.Config())
        assert theirs[1] == pytest.approx(100 * seeds.seed000_seeded(
            train_set.images, train_set.labels, test_set.images, test_set.labels, optimizer,
            1, 30))
    md = (tmp_path / "REPRODUCTION.md").read_text()
    assert "## Distributions over 2 seeds" in md and "Mann-Whitney" in md
    assert "U = " in md and "n = 2" in md
    assert json.loads((tmp_path / "reproduction.json").read_text())["seed_study"]["steps"] == 30


def test_negative_seeds_is_a_config_error():
    with pytest.raises(ConfigError, match="seeds: must be 0 or more"):
        report.Config(seeds=-1)


# ------------------------------------------------------- the committed report reproduces
COMMITTED = pathlib.Path(__file__).resolve().parents[1] / "docs" / "reproduction"
CELLS = ("tutorial", "ours", "pytorch", "reference")


def differences(committed: list[dict], fresh: list[dict]) -> list[str]:
    """Deterministic, full-settings figures of `committed` whose cells differ in `fresh`."""
    now = {(r["experiment"], r["figure"]): r for r in fresh}
    out = []
    for r in committed:
        if not r.get("deterministic") or r.get("quick") or r["experiment"] in report.QUICK_CHANGES:
            continue
        key = (r["experiment"], r["figure"])
        if key not in now:
            out.append(f"{key}: missing from the fresh run")
            continue
        out += [f"{key} {c}: committed {r.get(c)!r}, fresh {now[key].get(c)!r}"
                for c in CELLS if r.get(c) != now[key].get(c)]
    return out


@pytest.mark.slow
def test_committed_deterministic_figures_reproduce(tmp_path):
    # Regenerate the committed report after a change that moves a figure:
    #   python -m experiments.report --seeds 10 --out docs/reproduction
    committed = json.loads((COMMITTED / "reproduction.json").read_text())["rows"]
    names = tuple(n for n in report.EXPERIMENTS if n not in report.QUICK_CHANGES)
    fresh = report.run(report.Config(quick=True, only=names,
                                     options=RunOptions(out=str(tmp_path), progress=False)))["rows"]
    compared = [r for r in committed if r.get("deterministic") and r["experiment"] in names]
    assert len(compared) >= 20, (  # the comparison is not vacuous
        "docs/reproduction predates the deterministic/quick marks: regenerate it with "
        "python -m experiments.report --seeds 10 --out docs/reproduction")
    assert differences(committed, fresh) == []
    # ...and it can fail: one moved figure is found
    moved = [dict(r) for r in committed]
    next(r for r in moved if r["figure"] == "initial loss")["ours"] = "1763.8847"
    assert differences(moved, fresh) == [
        "('thermometer', 'initial loss') ours: committed '1763.8847', fresh '1763.8846'"]
