"""Issue 23's battery for sections 1-3 and 6 (data): hostile inputs tried as a user would.

    python tests/hostile_inputs.py [--tree DIR] [--only NAME]

Each case runs in a subprocess of its own (`python -m experiments.<x>` or a short library
snippet) under a memory cap (prlimit --as) and a time limit, against the jaxnets source tree
`--tree` (default: this one; give a checkout of main to see the "before"). Outcomes:
  one-line error   exit 2 with one stderr line (CLI), or a JaxnetsError whose message is one
                   line (library)
  correct result   the expected result (cases that are valid inputs)
  wrong result     exit 0 / a value, where the input should have been refused
  traceback        any other exception, MemoryError included
  hang             still running at the time limit
Not a pytest file (it takes minutes): tests/test_input_safety.py holds the same cases as tests.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def idx_header(*dims):
    return bytes([0, 0, 8, len(dims)]) + np.asarray(dims, ">u4").tobytes()


def write_idx(path, array, gz=False):
    array = np.asarray(array, np.uint8)
    payload = idx_header(*array.shape) + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(payload) if gz else payload)


def gz_bomb(path, head, zeros_mib):
    member = gzip.compress(bytes(MiB), 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(head, 9))
        f.writelines(member for _ in range(zeros_mib))


def idx_dir(path, size_train=28, size_test=28, n=64, gz=False):
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, size in (("train", size_train), ("t10k", size_test)):
        write_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte{ext}"),
                  rng.integers(0, 256, (n, size, size)), gz)
        write_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte{ext}"),
                  rng.integers(0, 10, n), gz)
    return path


def cifar_dir(path, n=8):
    rng = np.random.default_rng(0)
    folder = os.path.join(path, "cifar-10-batches-bin")
    os.makedirs(folder)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        rec = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(n, -1)], 1)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(rec.tobytes())
    return path


def lenet_state_dict():
    """A CIFAR LeNet state_dict (torch layout) of small random float32 values."""
    shapes = {"conv1.weight": (6, 3, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5),
              "conv2.bias": (16,), "fc1.weight": (120, 400), "fc1.bias": (120,),
              "fc2.weight": (84, 120), "fc2.bias": (84,), "fc3.weight": (10, 84),
              "fc3.bias": (10,)}
    rng = np.random.default_rng(0)
    return {k: (rng.normal(size=s) * 0.1).astype(np.float32) for k, s in shapes.items()}


def make_files(tmp):
    """Every file the cases read; returns {name: path}."""
    import torch
    from safetensors.numpy import save_file

    f = {}
    # 1. a 6 GiB gz bomb behind a header declaring 60000x28x28 (the case), ~6 MB
    d = idx_dir(os.path.join(tmp, "bomb"), gz=True)
    rng = np.random.default_rng(0)
    gz_bomb(os.path.join(d, "train-images-idx3-ubyte.gz"),
            idx_header(60000, 28, 28) + rng.integers(0, 256, 60000 * 784, np.uint8).tobytes(),
            6 * 1024)
    f["bomb_dir"] = d
    d = idx_dir(os.path.join(tmp, "lbomb"), gz=True)
    gz_bomb(os.path.join(d, "train-labels-idx1-ubyte.gz"), idx_header(64) + bytes(64), 1024)
    f["label_bomb_dir"] = d
    f["lying_header"] = os.path.join(tmp, "lying.gz")
    gz_bomb(f["lying_header"], idx_header(2**20, 28, 28), 1024)
    f["sparse_raw"] = os.path.join(tmp, "sparse")
    write_idx(f["sparse_raw"], np.zeros((2, 28, 28)))
    os.truncate(f["sparse_raw"], 8 << 30)
    f["truncated_valid_gz"] = os.path.join(tmp, "trunc.gz")
    with open(f["truncated_valid_gz"], "wb") as out:
        out.write(gzip.compress(idx_header(10, 28, 28) + bytes(5 * 784)))
    d = idx_dir(os.path.join(tmp, "zero_then_stream"), gz=True)
    gz_bomb(os.path.join(d, "train-images-idx3-ubyte.gz"), idx_header(0, 28, 28), 64)
    f["zero_then_stream_dir"] = d
    d = idx_dir(os.path.join(tmp, "devzero"))
    os.remove(os.path.join(d, "train-images-idx3-ubyte"))
    os.symlink("/dev/zero", os.path.join(d, "train-images-idx3-ubyte"))
    f["devzero_dir"] = d
    d = cifar_dir(os.path.join(tmp, "cifar_fifo"))
    os.remove(os.path.join(d, "cifar-10-batches-bin", "test_batch.bin"))
    os.mkfifo(os.path.join(d, "cifar-10-batches-bin", "test_batch.bin"))
    f["cifar_fifo_dir"] = d
    d = cifar_dir(os.path.join(tmp, "cifar_extra"))
    with open(os.path.join(d, "cifar-10-batches-bin", "test_batch.bin"), "ab") as out:
        out.write(b"xyz")
    f["cifar_extra_dir"] = d
    f["cifar_dir"] = cifar_dir(os.path.join(tmp, "cifar"))
    f["fifo_csv"] = os.path.join(tmp, "pipe.csv")
    os.mkfifo(f["fifo_csv"])
    f["y_txt"] = os.path.join(tmp, "y.txt")
    np.savetxt(f["y_txt"], np.ones((4, 10)))
    f["x_csv"] = os.path.join(tmp, "x.csv")
    np.savetxt(f["x_csv"], np.ones((4, 1000)), delimiter=",")
    f["nan_csv"] = os.path.join(tmp, "nan.csv")
    x = np.ones((4, 1000))
    x[2, 7] = np.nan
    np.savetxt(f["nan_csv"], x, delimiter=",")
    f["empty_csv"] = os.path.join(tmp, "empty.csv")
    open(f["empty_csv"], "w").close()
    f["blank_txt"] = os.path.join(tmp, "blank.txt")
    with open(f["blank_txt"], "w") as out:
        out.write("\n \n\n")
    # 2.
    f["mnist32_dir"] = idx_dir(os.path.join(tmp, "m32"), 32, 32)
    f["mnist32_test_dir"] = idx_dir(os.path.join(tmp, "m32t"), 28, 32)
    # 3. weights
    sd = lenet_state_dict()
    for name, value in (("nan", np.nan), ("inf", np.inf), ("huge", 3e38)):
        bad = dict(sd)
        bad["fc3.bias"] = bad["fc3.bias"].copy()
        bad["fc3.bias"][3] = value
        f[f"w_{name}"] = os.path.join(tmp, f"{name}.safetensors")
        save_file(bad, f[f"w_{name}"])
    for dtype in ("int8", "bool", "int64", "complex64", "float16", "bfloat16"):
        tsd = {k: torch.tensor(v) for k, v in sd.items()}
        if dtype in ("float16", "bfloat16"):
            tsd = {k: v.to(getattr(torch, dtype)) for k, v in tsd.items()}
        else:
            tsd["conv1.weight"] = torch.ones(6, 3, 5, 5, dtype=getattr(torch, dtype))
        f[f"w_{dtype}"] = os.path.join(tmp, f"{dtype}.pth")
        torch.save(tsd, f[f"w_{dtype}"])
    f["w_meta"] = os.path.join(tmp, "meta.pth")
    torch.save({k: torch.empty(v.shape, device="meta") for k, v in sd.items()}, f["w_meta"])
    f["w_shape"] = os.path.join(tmp, "shape.safetensors")
    save_file({**sd, "fc1.weight": np.ascontiguousarray(sd["fc1.weight"].T)}, f["w_shape"])
    f["w_fifo"] = os.path.join(tmp, "w_fifo.safetensors")
    os.mkfifo(f["w_fifo"])
    plain = os.path.join(tmp, "plain.pth")
    torch.save({"w": torch.zeros(256 * MiB)}, plain)  # 1 GiB of float32 zeros
    f["w_deflate_bomb"] = os.path.join(tmp, "deflate.pth")
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(f["w_deflate_bomb"], "w",
                                                        zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            with zin.open(info) as src, zout.open(info.filename, "w", force_zip64=True) as dst:
                while chunk := src.read(64 * MiB):
                    dst.write(chunk)
    os.remove(plain)
    f["w_trailing"] = os.path.join(tmp, "trailing.safetensors")
    save_file(sd, f["w_trailing"])
    with open(f["w_trailing"], "ab") as out:
        out.write(bytes(100))
    # 6.
    d = idx_dir(os.path.join(tmp, "twins_differ"))
    raw = os.path.join(d, "train-images-idx3-ubyte")
    with open(raw, "rb") as src:
        data = bytearray(src.read())
    data[-1] ^= 1
    with open(raw + ".gz", "wb") as out:
        out.write(gzip.compress(bytes(data)))
    f["twins_differ_dir"] = d
    d = idx_dir(os.path.join(tmp, "twins_same"))
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as src, open(os.path.join(d, name + ".gz"),
                                                            "wb") as out:
            out.write(gzip.compress(src.read()))
    f["twins_same_dir"] = d
    return f


PY_PRELUDE = """
import sys, numpy as np, jax, jax.numpy as jnp
from jaxnets import data as D, losses, train, optim, torch_io
from jaxnets.data import idx
from jaxnets.errors import JaxnetsError
from jaxnets.models import SeedMLP, LinearClassifier, LeNet
def fit_with(labels):
    n = len(labels)
    arrays = {"image": np.random.default_rng(0).integers(0, 256, (n, 784)).astype(np.uint8),
              "label": np.asarray(labels)}
    model = SeedMLP(hidden=8)
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    state = train.TrainState.create(apply_fn=model.apply, params=params, tx=optim.sgd(1e-3))
    step = train.make_train_step(train.classification_loss(model.apply, lambda x: x / 255.0))
    _, h = train.fit(state, train.make_run_steps(step), D.to_device(arrays),
                     D.EpochSampler(n, 4), 8, jax.random.key(0), progress=False)
    return h.metrics["loss"]
try:
    result = ({code})
except JaxnetsError as e:
    print("JAXNETS_ERROR " + str(e), file=sys.stderr)
    sys.exit(3)
print("RESULT", repr(result)[:300])
"""


def cases(f):
    """(section, name, kind, argv-or-code, expected: 'error' or a substring of the result)."""
    out = lambda n: os.path.join(f["tmp"], "out", n)
    cl = []

    def cli(section, name, argv, expect="error"):
        cl.append((section, name, "cli", argv, expect))

    def py(section, name, code, expect="error"):
        cl.append((section, name, "py", code, expect))

    mn = ["experiments.mnist", "--dataset", "mnist", "--steps", "20", "--quiet"]
    cu = ["experiments.custom_dataset", "--epochs", "1", "--quiet"]
    cw = ["experiments.cifar10", "--data-dir", f["cifar_dir"], "--quiet", "--weights"]
    cli("1", "mnist images .gz: 60000x28x28 declared, 6 GiB stream (issue)",
        mn + ["--data-dir", f["bomb_dir"], "--out", out("bomb")])
    py("1", "labels .gz: 64 declared, 1 GiB stream",
       f"D.load('mnist', 'train', {f['label_bomb_dir']!r})")
    py("1", "header declares 2^20 images, 1 MB file holding 1 GiB of zeros",
       f"idx.read_idx({f['lying_header']!r})")
    py("1", "raw IDX: 2 images declared, 8 GiB (sparse) file", f"idx.read_idx({f['sparse_raw']!r})")
    py("1", "truncated but well-formed .gz (5 of 10 images)",
       f"idx.read_idx({f['truncated_valid_gz']!r})")
    py("1", "header declaring 0 images, then 64 MiB of stream",
       f"D.load('mnist', 'train', {f['zero_then_stream_dir']!r})")
    py("1", "IDX images file is a symlink to /dev/zero",
       f"D.load('mnist', 'train', {f['devzero_dir']!r})")
    py("1", "CIFAR test_batch.bin is a FIFO", f"D.load('cifar10', 'test', {f['cifar_fifo_dir']!r})")
    py("1", "CIFAR test_batch.bin with 3 extra bytes",
       f"D.load('cifar10', 'test', {f['cifar_extra_dir']!r})")
    cli("1", "custom_dataset --csv-file /dev/zero (issue)",
        cu + ["--csv-file", "/dev/zero", "--txt-file", f["y_txt"], "--out", out("zero")])
    cli("1", "custom_dataset --csv-file FIFO",
        cu + ["--csv-file", f["fifo_csv"], "--txt-file", f["y_txt"], "--out", out("fifo")])
    py("1", ".pth with a deflated entry declaring 1 GiB (~1 MB file)",
       f"torch_io.load({f['w_deflate_bomb']!r})['w'].shape")
    py("1", "weights file that is a FIFO (library)", f"torch_io.load({f['w_fifo']!r})")
    py("1", "safetensors with 100 trailing bytes", f"torch_io.load({f['w_trailing']!r})")
    cli("2", "mnist --data-dir of 32x32 images (issue)",
        mn + ["--data-dir", f["mnist32_dir"], "--out", out("m32")])
    cli("2", "mnist --data-dir, only the test split 32x32 (issue)",
        mn + ["--data-dir", f["mnist32_test_dir"], "--out", out("m32t")])
    cli("2", "linear_classifier --data-dir of 32x32 images",
        ["experiments.linear_classifier", "--dataset", "mnist", "--epochs", "1", "--quiet",
         "--data-dir", f["mnist32_dir"], "--out", out("lc32")])
    py("2", "SeedMLP().init on [N,28,28,1] (issue)",
       "SeedMLP().init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))['params']['w1'].shape")
    py("2", "784-input SeedMLP applied to 32x32 images (issue)",
       "SeedMLP().apply(SeedMLP().init(jax.random.key(0), jnp.zeros((1, 784))), "
       "jnp.zeros((2, 1024))).shape")
    py("2", "LinearClassifier().init on [N,32,32,1]",
       "LinearClassifier().init(jax.random.key(0), jnp.zeros((2, 32, 32, 1)))['params']"
       "['fc1']['kernel'].shape")
    py("2", "LeNet on 28x28", "LeNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))")
    py("2", "SeedMLP on [N,784] (valid)",
       "SeedMLP().init(jax.random.key(0), jnp.zeros((2, 784)))['params']['w1'].shape",
       "(784, 200)")
    for name in ("nan", "inf", "huge"):
        cli("3", f"cifar10 --weights with {name} in fc3.bias (issue)", cw + [f[f"w_{name}"],
            "--out", out(f"w_{name}")])
    for dtype in ("int8", "bool", "int64", "complex64"):
        cli("3", f"cifar10 --weights {dtype} .pth (issue)", cw + [f[f"w_{dtype}"], "--out",
            out(f"w_{dtype}")])
    cli("3", "cifar10 --weights meta-device .pth (issue)", cw + [f["w_meta"], "--out",
        out("w_meta")])
    for dtype in ("float16", "bfloat16"):
        cli("3", f"cifar10 --weights {dtype} .pth (valid: widened)", cw + [f[f"w_{dtype}"],
            "--out", out(f"w_{dtype}")], "exit 0")
    cli("3", "cifar10 --weights, fc1.weight transposed", cw + [f["w_shape"], "--out",
        out("w_shape")])
    py("3", "cross_entropy, label -1 (issue)",
       "float(losses.cross_entropy(jnp.eye(10)[None, 9] * 9, jnp.array([-1])))")
    py("3", "cross_entropy, label 10 (issue)",
       "float(losses.cross_entropy(jnp.zeros((1, 10)), jnp.array([10])))")
    py("3", "cross_entropy, float labels", "float(losses.cross_entropy(jnp.zeros((2, 10)), "
       "jnp.array([0., 1.])))")
    py("3", "fit, one label -1 (issue)", "fit_with(np.r_[np.arange(15) % 10, -1]).tolist()")
    py("3", "fit, one label 10 (issue)", "fit_with(np.r_[np.arange(15) % 10, 10]).tolist()")
    py("3", "cross_entropy, valid labels", "round(float(losses.cross_entropy(jnp.zeros((2, 10)),"
       " jnp.array([0, 9]))), 5)", "2.30259")
    cli("6", "raw and .gz of different contents in --data-dir (issue)",
        mn + ["--data-dir", f["twins_differ_dir"], "--out", out("twins")])
    cli("6", "raw and .gz, same contents (torchvision's layout; valid)",
        mn + ["--data-dir", f["twins_same_dir"], "--out", out("same")], "exit 0")
    cli("6", "custom_dataset, empty CSV (issue)",
        cu + ["--csv-file", f["empty_csv"], "--txt-file", f["y_txt"], "--out", out("empty")])
    cli("6", "custom_dataset, TXT of blank lines",
        cu + ["--csv-file", f["x_csv"], "--txt-file", f["blank_txt"], "--out", out("blank")])
    cli("1", "custom_dataset, a NaN in the CSV",
        cu + ["--csv-file", f["nan_csv"], "--txt-file", f["y_txt"], "--out", out("nan")])
    return cl


def run_case(tree, kind, what, timeout=120, memory="6G"):
    if kind == "cli":
        cmd = [sys.executable, "-m", *what]
    else:
        cmd = [sys.executable, "-c", PY_PRELUDE.replace("{code}", what)]
    env = {**os.environ, "PYTHONPATH": tree, "JAX_PLATFORMS": "cpu"}
    t0 = time.time()
    with tempfile.NamedTemporaryFile("r") as rss:
        # GNU time writes the peak resident memory (KiB) of the case into `rss`; a session of
        # its own, so a case that hangs is killed with everything it started
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, "prlimit",
                              f"--as={_bytes(memory)}", *cmd], cwd=tree, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return "hang", f"still running after {timeout} s", time.time() - t0, None
        peak = rss.read().strip().splitlines()
    peak_mib = int(peak[-1]) // 1024 if peak and peak[-1].isdigit() else None
    lines = [line for line in stderr.splitlines() if line.strip()
             and "PytestBenchmarkWarning" not in line]
    return _classify(kind, p.returncode, lines, stdout), lines, time.time() - t0, peak_mib


def _bytes(text):
    return int(text[:-1]) << {"G": 30, "M": 20}[text[-1]]


def _classify(kind, code, lines, stdout):
    if kind == "cli":
        if code == 2 and len(lines) == 1:
            return "one-line error"
        if code == 0:
            return "exit 0"
        return "traceback"
    if code == 3 and len(lines) == 1 and lines[0].startswith("JAXNETS_ERROR"):
        return "one-line error"
    if code == 0:
        return "returned " + stdout.split("RESULT", 1)[-1].strip()[:120]
    return "traceback"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=HERE)
    ap.add_argument("--only")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hostile_")
    f = make_files(tmp)
    f["tmp"] = tmp
    counts = {}
    for section, name, kind, what, expect in cases(f):
        if args.only and args.only not in name:
            continue
        outcome, lines, seconds, peak = run_case(args.tree, kind, what)
        if outcome.startswith(("exit 0", "returned")):
            outcome = ("correct result" if expect != "error" and (
                expect == "exit 0" or expect in outcome) else "wrong result")
        counts[outcome] = counts.get(outcome, 0) + 1
        detail = (lines[-1] if isinstance(lines, list) and lines else
                  outcome if isinstance(lines, list) else str(lines))
        print(f"[{section}] {name}\n    -> {outcome} ({seconds:.0f} s, peak {peak} MiB): "
              f"{textwrap.shorten(detail, 220)}", flush=True)
    print("\ncases:", sum(counts.values()), counts)
    subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    main()
