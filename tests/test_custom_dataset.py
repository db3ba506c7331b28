"""experiments.custom_dataset: seed 002's myDataset + DataLoader, against torch's DataLoader."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from experiments import custom_dataset as E
from jaxnets import data as D
from jaxnets.options import RunOptions


class TorchMyDataset(Dataset):
    """The seed's myDataset as written: __getitem__ takes one idx and returns a tuple."""

    def __init__(self, mine: E.MyDataset):
        self.csv_data = torch.from_numpy(mine.csv_data)
        self.txt_data = torch.from_numpy(mine.txt_data)

    def __len__(self):
        return len(self.csv_data)

    def __getitem__(self, idx):
        return (self.csv_data[idx], self.txt_data[idx])


@pytest.fixture
def files(tmp_path):
    config = E.Config(examples=70, options=RunOptions(out=str(tmp_path / "out")))
    return E.write_example_files(config, jax.random.key(5))


@pytest.mark.parametrize("batch_size", [32, 7, 70, 100])
def test_batches_equal_torch_dataloader_in_order(files, batch_size):
    """DataLoader(myDataset, batch_size) without shuffling: the same batches, the last short."""
    mine = E.MyDataset(*files)
    ours = list(D.batches(mine, D.EpochSampler(len(mine), batch_size)))
    theirs = list(DataLoader(TorchMyDataset(mine), batch_size=batch_size))
    assert len(ours) == len(theirs) == -(-70 // batch_size)
    for a, (x, y) in zip(ours, theirs):
        np.testing.assert_array_equal(a["x"], x.numpy())
        np.testing.assert_array_equal(a["y"], y.numpy())


@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_batches_equal_torch_dataloader_fed_our_order(files, drop_last):
    """Shuffled: torch's generator draws other permutations, so torch is given our epoch order
    as its sampler; the batches (and drop_last's dropped tail) must then be the same."""
    mine = E.MyDataset(*files)
    sampler = D.EpochSampler(len(mine), 32, jax.random.key(1), drop_last=drop_last)
    for epoch in range(2):
        idx, mask = sampler.epoch_batches(epoch)
        order = D.epoch_order(sampler.key, epoch, len(mine)).tolist()
        theirs = list(DataLoader(TorchMyDataset(mine), batch_size=32, sampler=order,
                                 drop_last=drop_last))
        ours = list(D.batches(mine, sampler, start=epoch * sampler.steps_per_epoch))
        assert len(ours) == len(theirs) == len(idx)
        for a, (x, y) in zip(ours, theirs):
            np.testing.assert_array_equal(a["x"], x.numpy())
            np.testing.assert_array_equal(a["y"], y.numpy())
        assert sorted(idx[mask].tolist()) == (sorted(order[: len(idx) * 32]) if drop_last
                                              else list(range(70)))


def test_example_files_read_back_exactly(files):
    mine = E.MyDataset(*files)
    kx, ky = jax.random.split(jax.random.key(5))
    np.testing.assert_array_equal(mine.csv_data, np.asarray(jax.random.normal(kx, (70, 1000))))
    np.testing.assert_array_equal(mine.txt_data, np.asarray(jax.random.normal(ky, (70, 10))))


def test_run_trains_on_the_dataset_like_full_arrays(tmp_path, files):
    """The materialized dataset feeds train.fit: its losses equal torch's on the same batches."""
    config = E.Config(*files, batch_size=32, epochs=2, lr=1e-3,
                      options=RunOptions(out=str(tmp_path / "o")))
    metrics = E.run(config)
    assert metrics["batch_shapes"] == [{"x": [32, 1000], "y": [32, 10]}] * 2 + [
        {"x": [6, 1000], "y": [6, 10]}]
    # The same Sequential, initial weights and batches in torch, the seed's loop.
    _, _, init_key, _ = jax.random.split(jax.random.key(config.seed), 4)
    model = E.two_layer_sequential(100, 10)
    params = model.init(init_key, np.zeros((1, 1000), np.float32))["params"]
    net = torch.nn.Sequential(torch.nn.Linear(1000, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    with torch.no_grad():
        for i, name in ((0, "layers_0"), (2, "layers_2")):
            net[i].weight.copy_(torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy()))
            net[i].bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    epoch_losses = []
    for _ in range(2):
        total = 0.0
        for x, y in DataLoader(TorchMyDataset(E.MyDataset(*files)), batch_size=32):
            loss = (net(x) - y).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        epoch_losses.append(total)
    np.testing.assert_allclose(metrics["epoch_losses"], epoch_losses, rtol=1e-4)
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["epoch_losses"] == metrics["epoch_losses"]


def test_main_bad_file_is_one_line(tmp_path, files, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\nthree 4\n")
    code = E.main(["--csv-file", files[0], "--txt-file", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bad.txt: not rows of numbers" in err
    short = tmp_path / "short.txt"
    short.write_text("1 2\n")
    assert E.main(["--csv-file", files[0], "--txt-file", str(short)]) == 2
    assert "1 lines but" in capsys.readouterr().err
    assert E.main(["--csv-file", files[0]]) == 2
    assert "go together" in capsys.readouterr().err
