"""Seeds 001, 002, 003: the PyTorch tensor tour, snippet by snippet, in JAX.

    python -m experiments.tensors                   # every section
    python -m experiments.tensors --list            # the sections and the snippets they mirror
    python -m experiments.tensors --section add     # one section

Each section runs the JAX counterpart of one PyTorch snippet and prints it under a heading that
names the snippet; a reader who knows the snippet sees the same numbers. Where JAX has no direct
equivalent (in-place ops, `out=`, memory shared with numpy, named tensors) the section shows the
idiomatic JAX way and says why it differs. Two dtype defaults differ and are said so where they
show: JAX has 64-bit types off by default, so torch's int64 (`dtype=torch.long`, integer lists)
is int32 here and float64 numpy arrays become float32 (`jax_dtype_for`).

Randomness takes explicit keys: section NAME uses `fold_in(key(--seed), crc32(NAME))`, so a
section prints the same numbers alone or in the full tour. Writes metrics.json (each section's
values) and the arrays saved by the `save` section into --out.

The tour machinery (`Section`, `run_tour`) is in `experiments.tour`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys

from experiments import cli


@dataclasses.dataclass(frozen=True)
class Config:
    section: str | None = cli.arg(None, "run one section only (names: --list)", metavar="NAME")
    list: bool = cli.arg(False, "list the sections and the snippets they mirror, and exit")
    seed: int = cli.seed()
    out: str = cli.out("tensors")
    progress: bool = cli.progress()
    quiet: bool = cli.quiet()

    def __post_init__(self):
        # SECTIONS is defined below the imports that answer_early runs before, so an unknown
        # --section is reported when main builds the Config again, after them.
        if "SECTIONS" in globals():
            check_section(self.section, SECTIONS)


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tour import (
    Context,
    Section,
    check_section,
    note,
    run_tour,
    show,
    text,
)

# --- dtypes --------------------------------------------------------------------------------------

# JAX's defaults with 64-bit types off (jax_enable_x64 unset): what torch's 64-bit dtypes become.
X32_DTYPES = {"int64": "int32", "float64": "float32", "complex128": "complex64"}


def jax_dtype_for(torch_dtype: str) -> str:
    """The JAX dtype a torch dtype name ('int64', 'float32', ...) maps to under JAX's defaults."""
    name = torch_dtype.removeprefix("torch.")
    return name if jax.config.jax_enable_x64 else X32_DTYPES.get(name, name)


DTYPE_NOTE = ("torch makes int64 from Python ints and keeps numpy's float64; JAX has 64-bit "
              "types off by default (set jax_enable_x64 to get them), so these are int32 and "
              "float32 here.")

# --- the sections --------------------------------------------------------------------------------

POINTS = [[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]  # seed 003's `points`


def sec_tensor(ctx: Context) -> tuple[dict, str]:
    data = [[1, 2], [3, 4]]
    x_data = jnp.array(data)
    x = jnp.array([5.5, 3])
    return {"x_data": x_data, "x": x}, text(
        show("x_data = jnp.array([[1, 2], [3, 4]])", x_data),
        show("x = jnp.array([5.5, 3])", x),
        note("the dtype is inferred as torch.tensor does: all ints -> an integer type, any "
             "float -> float32. torch's integer default is int64; JAX has 64-bit types off by "
             "default (jax_enable_x64 turns them on), so it is int32 here."))


def sec_from_numpy(ctx: Context) -> tuple[dict, str]:
    np_array = np.array([[1, 2], [3, 4]])
    x_np = jnp.asarray(np_array)
    ones = jnp.asarray(np.ones(5))
    return {"x_np": x_np, "ones": ones}, text(
        show("x_np = jnp.asarray(np.array([[1, 2], [3, 4]]))", x_np),
        show("x = jnp.asarray(np.ones(5))", ones),
        note("jnp.asarray copies: torch.from_numpy shares the numpy buffer, a JAX array is "
             "immutable and owned by its device (section numpy). " + DTYPE_NOTE))


def sec_empty(ctx: Context) -> tuple[dict, str]:
    x = jnp.empty((5, 3))
    return {"x": x}, text(
        show("x = jnp.empty((5, 3))", x),
        note("torch.empty returns uninitialised memory (any numbers); XLA never exposes "
             "uninitialised buffers, so jnp.empty is zeros."))


def sec_random(ctx: Context) -> tuple[dict, str]:
    k_rand, k_randn, k_like = jax.random.split(ctx.key, 3)
    rand = jax.random.uniform(k_rand, (5, 3))
    randn = jax.random.normal(k_randn, (5, 3))
    x = jnp.array([5.5, 3])
    like = jax.random.normal(k_like, x.shape, x.dtype)
    return {"rand": rand, "randn": randn, "randn_like": like}, text(
        show("k_rand, k_randn, k_like = jax.random.split(key, 3)  # one key per draw\n"
             ">>> x = jax.random.uniform(k_rand, (5, 3))      # torch.rand(5, 3): U[0, 1)", rand),
        show("x = jax.random.normal(k_randn, (5, 3))      # torch.randn(5, 3): N(0, 1)", randn),
        show("jax.random.normal(k_like, x.shape, x.dtype) # torch.randn_like(x)", like),
        note("torch draws from a hidden global generator (torch.manual_seed); JAX takes the "
             "key as an argument and a key is used once, so the same key gives the same numbers "
             "anywhere, jit and devices included. The values differ from torch's (another "
             "generator); shape, dtype and distribution agree."))


def sec_factories(ctx: Context) -> tuple[dict, str]:
    zeros = jnp.zeros((5, 3), dtype=int)
    ones = jnp.ones((5, 3), dtype=int)
    eye = jnp.eye(5, 3, dtype=int)
    return {"zeros": zeros, "ones": ones, "eye": eye}, text(
        show("jnp.zeros((5, 3), dtype=int)", zeros),
        show("jnp.ones((5, 3), dtype=int)", ones),
        show("jnp.eye(5, 3, dtype=int)", eye),
        note("dtype=torch.long is int64; `dtype=int` asks JAX for its default integer, int32 "
             "unless jax_enable_x64 is set (jnp.int64 would be truncated with a warning)."))


def sec_attributes(ctx: Context) -> tuple[dict, str]:
    x = jax.random.uniform(ctx.key, (5, 3))
    return {"shape": x.shape, "dtype": str(x.dtype), "device": str(x.device),
            "numel": x.size}, text(
        show("x.shape", x.shape),
        show("x.dtype", x.dtype),
        show("x.device", x.device),
        show("x.size", x.size),
        note("torch.Size is a tuple, as is .shape here. Careful: torch's x.size() is the "
             "shape, JAX's (numpy's) x.size is the number of elements (torch's numel())."))


def sec_indexing(ctx: Context) -> tuple[dict, str]:
    points = jnp.array(POINTS)
    values = {
        "points": points, "points_0_1": points[0, 1], "points_1_": points[1:],
        "points_1_0": points[1:, 0], "points_none": points[None],
        "unsqueeze": jnp.expand_dims(points, 0), "set": points.at[0, 0].set(9.0),
    }
    return values, text(
        show("points = jnp.array([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])", points),
        show("points[0, 1]", values["points_0_1"]),
        show("points[1:]", values["points_1_"]),
        show("points[1:, 0]", values["points_1_0"]),
        show("points[None]          # adds a size-1 axis, like points.unsqueeze(0)",
             values["points_none"]),
        show("jnp.expand_dims(points, 0)   # torch.unsqueeze", values["unsqueeze"]),
        show("points.at[0, 0].set(9.0)     # torch: points[0, 0] = 9.0", values["set"]),
        note("indexing and slicing read as in torch and numpy. Assignment differs: JAX arrays "
             "are immutable, so `points[0, 0] = 9` becomes `points = points.at[0, 0].set(9)`, "
             "a new array (under jit XLA updates in place when it can)."))


def _blitz_tensor() -> jax.Array:
    """The 60-minute blitz's `tensor = torch.ones(4, 4); tensor[:, 1] = 0`."""
    return jnp.ones((4, 4)).at[:, 1].set(0)


def sec_cat(ctx: Context) -> tuple[dict, str]:
    tensor = _blitz_tensor()
    t1 = jnp.concatenate([tensor, tensor, tensor], axis=1)
    return {"tensor": tensor, "t1": t1}, text(
        show("tensor = jnp.ones((4, 4)).at[:, 1].set(0)", tensor),
        show("t1 = jnp.concatenate([tensor, tensor, tensor], axis=1)  # torch.cat(..., dim=1)",
             t1))


def sec_mul(ctx: Context) -> tuple[dict, str]:
    tensor = _blitz_tensor()
    return {"mul": jnp.multiply(tensor, tensor), "star": tensor * tensor}, text(
        show("jnp.multiply(tensor, tensor)   # tensor.mul(tensor)", jnp.multiply(tensor, tensor)),
        show("tensor * tensor", tensor * tensor))


def sec_matmul(ctx: Context) -> tuple[dict, str]:
    a = jnp.arange(12.0).reshape(4, 3)
    b = jnp.arange(6.0).reshape(3, 2)
    v = jnp.array([1.0, -1.0, 2.0])
    tensor = _blitz_tensor()
    values = {"a": a, "b": b, "v": v, "matmul": jnp.matmul(tensor, tensor.T),
              "at": tensor @ tensor.T, "mm": a @ b, "mv": a @ v}
    return values, text(
        show("jnp.matmul(tensor, tensor.T)   # tensor.matmul(tensor.T)", values["matmul"]),
        show("tensor @ tensor.T", values["at"]),
        show("a, b = jnp.arange(12.0).reshape(4, 3), jnp.arange(6.0).reshape(3, 2)\n"
             ">>> a @ b                        # torch.mm(a, b)", values["mm"]),
        show("a @ jnp.array([1.0, -1.0, 2.0])  # torch.mv(a, v)", values["mv"]),
        note("one operator covers matmul, mm and mv; on float32 JAX's default matmul precision "
             "is full float32 on CPU (GPUs/TPUs may use lower-precision passes unless "
             "jax_default_matmul_precision is 'highest')."))


def sec_abs(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (5, 3))
    return {"x": x, "abs": jnp.abs(x)}, text(
        show("x = jax.random.normal(key, (5, 3))", x),
        show("x = jnp.abs(x)", jnp.abs(x)))


def sec_add(ctx: Context) -> tuple[dict, str]:
    kx, ky = jax.random.split(ctx.key)
    x = jax.random.normal(kx, (5, 3))
    y = jax.random.uniform(ky, (5, 3))
    result = jnp.add(x, y)
    y_new = y + x
    return {"x": x, "y": y, "plus": x + y, "add": jnp.add(x, y), "out": result,
            "add_": y_new}, text(
        show("x + y", x + y),
        show("jnp.add(x, y)", jnp.add(x, y)),
        show("result = jnp.add(x, y)         # torch.add(x, y, out=result)", result),
        show("y = y + x                      # y.add_(x)", y_new),
        note("JAX has no out= and no in-place x.op_(): arrays are immutable and functions are "
             "pure, which is what lets jit, grad and vmap transform them. Rebind the name "
             "instead; inside jit XLA reuses buffers itself (and donate_argnums hands over an "
             "input's memory)."))


def sec_arithmetic(ctx: Context) -> tuple[dict, str]:
    x = jnp.array([[1.0, -2.0], [3.0, 4.0]])
    y = jnp.array([[2.0, 4.0], [-1.0, 0.5]])
    values = {"x": x, "y": y, "sub": jnp.subtract(x, y), "div": jnp.divide(x, y),
              "pow": jnp.power(x, 2), "pow_t": jnp.power(x, y)}
    return values, text(
        show("x, y = jnp.array([[1.0, -2.0], [3.0, 4.0]]), jnp.array([[2.0, 4.0], [-1.0, 0.5]])"
             "\n>>> jnp.subtract(x, y)          # torch.sub", values["sub"]),
        show("jnp.divide(x, y)               # torch.div (true division)", values["div"]),
        show("jnp.power(x, 2)                # torch.pow(x, 2)", values["pow"]),
        show("jnp.power(x, y)                # torch.pow(x, y)", values["pow_t"]))


def sec_clamp(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (5, 3))
    return {"x": x, "clamp": jnp.clip(x, 0, 1)}, text(
        show("x = jax.random.normal(key, (5, 3))", x),
        show("jnp.clip(x, 0, 1)              # torch.clamp(x, min=0, max=1)", jnp.clip(x, 0, 1)))


def sec_view(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (4, 4))
    y = x.reshape(16)
    z = x.reshape(-1, 8)
    return {"x": x, "y": y, "z": z, "shapes": [x.shape, y.shape, z.shape]}, text(
        show("x = jax.random.normal(key, (4, 4)); y = x.reshape(16); z = x.reshape(-1, 8)\n"
             ">>> x.shape, y.shape, z.shape", (x.shape, y.shape, z.shape)),
        show("z", z),
        note("torch's view shares storage with x (writing into y changes x); JAX arrays are "
             "immutable, so reshape can neither share observably nor need to: it is the one "
             "spelling for view and reshape, -1 inferred the same way."))


def sec_item(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (1,))
    return {"x": x, "item": x.item()}, text(
        show("x = jax.random.normal(key, (1,))", x),
        show("x.item()", x.item()),
        note("item() (or float(x)) copies the value to the host, which waits for the device: "
             "fine once per print, costly once per step."))


def sec_numpy(ctx: Context) -> tuple[dict, str]:
    a = jnp.ones(5)
    b = np.asarray(a)                    # torch: b = a.numpy()
    a = a + 1                            # torch: a.add_(1) changes b too
    writable = np.array(a)               # a writable copy
    n = np.ones(5)
    t = jnp.asarray(n)                   # torch: t = torch.from_numpy(n)
    np.add(n, 1, out=n)                  # torch: t changes too
    values = {"a": a, "b": b.copy(), "b_writeable": bool(b.flags.writeable),
              "writable_copy": writable, "n": n.copy(), "t": t}
    return values, text(
        show("a = jnp.ones(5); b = np.asarray(a)   # torch: b = a.numpy()", b),
        show("a = a + 1; b                         # torch: a.add_(1) makes b 2s", b),
        show("b.flags.writeable", b.flags.writeable),
        show("np.array(a)                          # a writable numpy copy", writable),
        show("n = np.ones(5); t = jnp.asarray(n); np.add(n, 1, out=n); t", t),
        note("torch and numpy share one buffer both ways, so an in-place change shows on the "
             "other side. JAX arrays are immutable: np.asarray(a) is a read-only view on CPU "
             "(nothing can change it) and a copy from an accelerator, and jnp.asarray(n) copies, "
             "so later changes to n do not reach t. Nothing is shared that could be mutated."))


def accelerator() -> jax.Device | None:
    """The first non-CPU device, or None on a CPU-only machine."""
    return next((d for d in jax.devices() if d.platform != "cpu"), None)


def sec_device(ctx: Context) -> tuple[dict, str]:
    points = jnp.array(POINTS)
    accel = accelerator()
    device = accel if accel is not None else jax.devices("cpu")[0]
    points_gpu = jax.device_put(points, device)
    with jax.default_device(device):      # torch.tensor([[4.0, 1.0], ...], device='cuda')
        created = jnp.array(POINTS)
    doubled = 2 * points_gpu
    points_cpu = jax.device_put(doubled, jax.devices("cpu")[0])
    values = {"available": accel is not None, "devices": [str(d) for d in jax.devices()],
              "backend": jax.default_backend(), "points_gpu_device": str(points_gpu.device),
              "created_device": str(created.device),
              "doubled_device": str(doubled.device), "points_cpu": points_cpu,
              "points_cpu_device": str(points_cpu.device)}
    return values, text(
        show("jax.devices()", jax.devices()),
        show("accelerator() is not None          # torch.cuda.is_available()", accel is not None),
        show("device = accelerator() or jax.devices('cpu')[0]\n"
             ">>> points_gpu = jax.device_put(points, device)  # points.to(device='cuda')\n"
             ">>> points_gpu.device", points_gpu.device),
        show("with jax.default_device(device): jnp.array(...)  # torch.tensor(..., "
             "device='cuda')\n>>> _.device", created.device),
        show("(2 * points_gpu).device            # results stay where the inputs are",
             doubled.device),
        show("jax.device_put(2 * points_gpu, jax.devices('cpu')[0])  # .to(device='cpu')",
             points_cpu),
        note("arrays are created on the default device (the GPU when JAX sees one), so "
             "`device='cuda'` and `.cuda()` are usually not needed; jax.device_put moves an array "
             "explicitly and works the same on a CPU-only machine, where device is the CPU."))


CHANNEL_WEIGHTS = [0.2126, 0.7152, 0.0722]  # seed 003's weights_named (luminance weights)
DIM_LETTERS = {"channels": "c", "rows": "h", "columns": "w"}


def named_subscripts(*names: str) -> str:
    """einsum subscripts for dimensions given by name, with '...' for leading batch dims."""
    return "..." + "".join(DIM_LETTERS[n] for n in names)


def to_gray(img: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted sum over the named 'channels' dim of a (..., channels, rows, columns) image."""
    spec = (f"{named_subscripts('channels', 'rows', 'columns')},{named_subscripts('channels')}"
            f"->{named_subscripts('rows', 'columns')}")
    return jnp.einsum(spec, img, weights)


def sec_named(ctx: Context) -> tuple[dict, str]:
    k_img, k_batch = jax.random.split(ctx.key)
    weights_named = (jnp.array(CHANNEL_WEIGHTS), ("channels",))  # the array and its dim names
    weights = weights_named[0]
    img_t = jax.random.normal(k_img, (3, 5, 5))          # (channels, rows, columns)
    batch_t = jax.random.normal(k_batch, (2, 3, 5, 5))   # (batch, channels, rows, columns)
    broadcast = (img_t * weights[:, None, None]).sum(-3)  # the book's unsqueeze + sum(-3)
    gray = to_gray(img_t, weights)
    batch_gray = to_gray(batch_t, weights)
    values = {"weights": weights, "names": list(weights_named[1]), "img_t": img_t,
              "batch_t": batch_t, "gray_broadcast": broadcast, "gray": gray,
              "batch_gray": batch_gray}
    return values, text(
        show("weights_named = (jnp.array([0.2126, 0.7152, 0.0722]), ('channels',))",
             weights_named),
        show("img_t = jax.random.normal(k_img, (3, 5, 5))   # channels, rows, columns\n"
             ">>> (img_t * weights[:, None, None]).sum(-3)    # the book's unnamed way",
             broadcast),
        show("to_gray(img_t, weights)  # einsum('...chw,c->...hw'), c/h/w named "
             "channels/rows/columns", gray),
        show("to_gray(batch_t, weights).shape              # batch (2, 3, 5, 5)",
             batch_gray.shape),
        note("JAX has no named tensors (and PyTorch's were experimental: 2.13 no longer "
             "accepts names=). einsum with subscripts built from dimension names does what "
             "align_as + sum('channels') did: dims are matched by name, not position, and "
             "'...' carries any batch dims."))


def sec_save(ctx: Context) -> tuple[dict, str]:
    points = jnp.array(POINTS)
    os.makedirs(ctx.out, exist_ok=True)
    path = os.path.join(ctx.out, "ourpoints.npy")
    np.save(path, np.asarray(points), allow_pickle=False)        # torch.save(points, path)
    from_path = jnp.asarray(np.load(path, allow_pickle=False))    # torch.load(path)
    with open(path, "wb") as f:                                   # torch.save(points, f)
        np.save(f, np.asarray(points), allow_pickle=False)
    with open(path, "rb") as f:
        from_file = jnp.asarray(np.load(f, allow_pickle=False))
    buffer = io.BytesIO()                                         # any file-like object works
    np.save(buffer, np.asarray(points), allow_pickle=False)
    values = {"path": path, "points": points, "loaded_path": from_path,
              "loaded_file": from_file, "nbytes_in_memory_file": len(buffer.getvalue())}
    return values, text(
        show(f"np.save({path!r}, np.asarray(points), allow_pickle=False)\n"
             f">>> jnp.asarray(np.load({path!r}, allow_pickle=False))", from_path),
        show("with open(path, 'wb') as f: np.save(f, np.asarray(points), allow_pickle=False)\n"
             ">>> with open(path, 'rb') as f: jnp.asarray(np.load(f, allow_pickle=False))",
             from_file),
        note("torch.save pickles, and unpickling can run code; .npy is a plain header + raw "
             "bytes (allow_pickle=False refuses object arrays), readable by numpy, "
             "torch.from_numpy and anything else. Dicts of arrays (state_dicts) go to "
             "safetensors, training state to orbax checkpoints."))


SECTIONS: tuple[Section, ...] = (
    Section("tensor", "x_data = torch.tensor([[1, 2], [3, 4]]); torch.tensor([5.5, 3])",
            sec_tensor),
    Section("from_numpy", "torch.from_numpy(np_array); torch.from_numpy(np.ones(5))",
            sec_from_numpy),
    Section("empty", "torch.empty(5, 3)", sec_empty),
    Section("random", "torch.rand(5, 3); torch.randn(5, 3); torch.randn_like(x)", sec_random),
    Section("factories", "torch.zeros / ones / eye(5, 3, dtype=torch.long)", sec_factories),
    Section("attributes", "x.shape, x.size(), x.dtype, x.device", sec_attributes),
    Section("indexing", "points[0, 1]; points[1:, 0]; points[None]; unsqueeze(0)", sec_indexing),
    Section("cat", "torch.cat([tensor, tensor, tensor], dim=1)", sec_cat),
    Section("mul", "tensor.mul(tensor); tensor * tensor", sec_mul),
    Section("matmul", "tensor.matmul(tensor.T); tensor @ tensor.T; torch.mm; torch.mv",
            sec_matmul),
    Section("abs", "x = torch.abs(x)", sec_abs),
    Section("add", "x + y; torch.add(x, y); torch.add(x, y, out=result); y.add_(x)", sec_add),
    Section("arithmetic", "torch.sub / torch.div / torch.pow", sec_arithmetic),
    Section("clamp", "torch.clamp(x, min=0, max=1)", sec_clamp),
    Section("view", "y = x.view(16); z = x.view(-1, 8)", sec_view),
    Section("item", "torch.randn(1).item()", sec_item),
    Section("numpy", "a.numpy(); torch.from_numpy(n) (shared memory)", sec_numpy),
    Section("device", "torch.cuda.is_available(); x.cuda(); points.to(device='cuda'/'cpu')",
            sec_device),
    Section("named", "weights_named = torch.tensor([...], names=['channels'])", sec_named),
    Section("save", "torch.save(points, path); torch.save(points, f); torch.load(path)",
            sec_save),
)


# --- the experiment ------------------------------------------------------------------------------


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return run_tour("tensors", SECTIONS, section=config.section, list_only=config.list,
                    seed=config.seed, out=config.out, progress=not config.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
