"""Seeds 001, 002, 003: the PyTorch tensor tour, snippet by snippet, in JAX.

    python -m experiments.tensors                   # every section
    python -m experiments.tensors --list            # the sections and the snippets they mirror
    python -m experiments.tensors --section add     # one section

Each section is a JAX snippet, printed line by line at a Python prompt with the output it
produced under each line: the code shown is the code that ran (`experiments.tour`). Every section
runs in a fresh session that has run only the lines printed at the top of the tour (the imports
and `key = jax.random.key(--seed)`), so pasting those lines and a section's lines into `python`
gives the same output. The comment beside a line is the PyTorch line it mirrors. Where JAX has
no direct equivalent (in-place ops, `out=`, memory shared with numpy, named tensors, whole-model
pickles) the section shows the idiomatic JAX way and its note says why it differs. Two dtype
defaults differ and are said so where they show: JAX has 64-bit types off by default, so torch's
int64 (`dtype=torch.long`, integer lists) is int32 here and float64 numpy arrays become float32
(`jax_dtype_for`).

The seeds print one figure of their own here: seed 003's Out[7], the named weights (`TUTORIAL`).
Writes metrics.json (each section's values) and the files saved by the `save` and `save_model`
sections into --out.
"""

from __future__ import annotations

import dataclasses
import sys

from experiments import cli
from jaxnets.options import RunOptions


@dataclasses.dataclass(frozen=True)
class Config:
    section: str | None = cli.arg(None, "run one section only (names: --list)", metavar="NAME")
    list: bool = cli.arg(False, "list the sections and the snippets they mirror, and exit")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/tensors")

    def __post_init__(self):
        # SECTIONS is defined below the imports that answer_early runs before, so an unknown
        # --section is reported when main builds the Config again, after them.
        if "SECTIONS" in globals():
            check_section(self.section, SECTIONS)


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax

from experiments.tour import Section, check_section, run_tour

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
# Each section's `code` is what the transcript shows and what runs (experiments.tour); the PyTorch
# line each JAX line mirrors is the comment beside it.

POINTS = [[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]  # seed 003's `points`
CHANNEL_WEIGHTS = [0.2126, 0.7152, 0.0722]     # seed 003's weights_named (luminance weights)

# Figures the seeds themselves print, with where they print them (the tour's notes compare).
TUTORIAL: dict[str, str] = {
    "weights_named (seed 003, In[7]/Out[7])":
        "tensor([0.2126, 0.7152, 0.0722], names=('channels',))",
}

SECTIONS: tuple[Section, ...] = (
    Section("tensor", "x_data = torch.tensor([[1, 2], [3, 4]]); torch.tensor([5.5, 3])", """
        data = [[1, 2], [3, 4]]
        x_data = jnp.array(data)         # x_data = torch.tensor(data)
        x_data
        x = jnp.array([5.5, 3])          # x = torch.tensor([5.5, 3])
        x
        """, {"x_data": "x_data", "x": "x"},
        "the dtype is inferred as torch.tensor does: all ints -> an integer type, any float -> "
        "float32. torch's integer default is int64; JAX has 64-bit types off by default "
        "(jax_enable_x64 turns them on), so it is int32 here."),
    Section("from_numpy", "torch.from_numpy(np_array); torch.from_numpy(np.ones(5))", """
        np_array = np.array([[1, 2], [3, 4]])
        x_np = jnp.asarray(np_array)     # x_np = torch.from_numpy(np_array)
        x_np
        x = jnp.asarray(np.ones(5))      # x = torch.from_numpy(np.ones(5))
        x
        """, {"x_np": "x_np", "ones": "x"},
        "jnp.asarray copies: torch.from_numpy shares the numpy buffer, a JAX array is immutable "
        "and owned by its device (section numpy). " + DTYPE_NOTE),
    Section("empty", "torch.empty(5, 3)", """
        x = jnp.empty((5, 3))            # x = torch.empty(5, 3)
        x
        """, {"x": "x"},
        "torch.empty returns uninitialised memory (any numbers); XLA never exposes uninitialised "
        "buffers, so jnp.empty is zeros."),
    Section("random", "torch.rand(5, 3); torch.randn(5, 3); torch.randn_like(x)", """
        k_rand, k_randn, k_like = jax.random.split(key, 3)   # one key per draw
        jax.random.uniform(k_rand, (5, 3))       # torch.rand(5, 3): U[0, 1)
        jax.random.normal(k_randn, (5, 3))       # torch.randn(5, 3): N(0, 1)
        x = jnp.asarray(np.ones(5))              # seed 002's x here: torch.from_numpy(np.ones(5))
        jax.random.normal(k_like, x.shape, x.dtype)   # x = torch.randn_like(x)
        """, {"rand": 0, "randn": 1, "randn_like": 2},
        "torch draws from a hidden global generator (torch.manual_seed); JAX takes the key as "
        "an argument, and a key is used once: split it into one key per draw. The same key "
        "gives the same numbers anywhere (every section here starts from the same `key`, so "
        "sections that draw from it directly print the same numbers), jit and devices "
        "included. The values differ from torch's (another generator); shape, dtype and "
        "distribution agree."),
    Section("factories", "torch.zeros / ones / eye(5, 3, dtype=torch.long)", """
        jnp.zeros((5, 3), dtype=int)     # torch.zeros(5, 3, dtype=torch.long)
        jnp.ones((5, 3), dtype=int)      # torch.ones(5, 3, dtype=torch.long)
        jnp.eye(5, 3, dtype=int)         # torch.eye(5, 3, dtype=torch.long)
        """, {"zeros": 0, "ones": 1, "eye": 2},
        "dtype=torch.long is int64; `dtype=int` asks JAX for its default integer, int32 unless "
        "jax_enable_x64 is set (jnp.int64 would be truncated with a warning)."),
    Section("attributes", "x.shape, x.size(), x.dtype, x.device", """
        x = jax.random.uniform(key, (5, 3))      # x = torch.rand(5, 3)
        x.shape                          # x.shape, x.size()
        x.dtype                          # x.dtype
        x.device                         # x.device
        x.size                           # x.numel()
        """, {"shape": 0, "dtype": 1, "device": 2, "numel": 3},
        "torch.Size is a tuple, as is .shape here. Careful: torch's x.size() is the shape, "
        "JAX's (numpy's) x.size is the number of elements (torch's numel())."),
    Section("indexing", "points[0, 1]; points[1:, 0]; points[None]; unsqueeze(0)", """
        points = jnp.array([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])
        points[0, 1]
        points[1:]
        points[1:, 0]
        points[None]                     # adds a size-1 axis, like points.unsqueeze(0)
        jnp.expand_dims(points, 0)       # torch.unsqueeze(points, 0)
        points.at[0, 0].set(9.0)         # points[0, 0] = 9.0 (a new array)
        points
        """, {"points_0_1": 0, "points_1_": 1, "points_1_0": 2, "points_none": 3,
              "unsqueeze": 4, "set": 5, "points": 6},
        "indexing and slicing read as in torch and numpy. Assignment differs: JAX arrays are "
        "immutable, so `points[0, 0] = 9` becomes `points = points.at[0, 0].set(9)`, a new array "
        "(points itself is unchanged, as the last line shows; under jit XLA updates in place "
        "when it can)."),
    Section("cat", "torch.cat([tensor, tensor, tensor], dim=1)", """
        tensor = jnp.ones((4, 4)).at[:, 1].set(0)   # tensor = torch.ones(4, 4); tensor[:, 1] = 0
        tensor
        t1 = jnp.concatenate([tensor, tensor, tensor], axis=1)   # torch.cat(..., dim=1)
        t1
        """, {"tensor": "tensor", "t1": "t1"},
        "seed 001 names torch.cat, tensor.mul and tensor.matmul without code; `tensor` and these "
        "calls are from the PyTorch 60-minute blitz that seed 001 follows (its tensors page)."),
    Section("mul", "tensor.mul(tensor); tensor * tensor", """
        tensor = jnp.ones((4, 4)).at[:, 1].set(0)   # tensor = torch.ones(4, 4); tensor[:, 1] = 0
        jnp.multiply(tensor, tensor)     # tensor.mul(tensor)
        tensor * tensor                  # tensor * tensor
        """, {"mul": 0, "star": 1}),
    Section("matmul", "tensor.matmul(tensor.T); tensor @ tensor.T; torch.mm; torch.mv", """
        tensor = jnp.ones((4, 4)).at[:, 1].set(0)   # tensor = torch.ones(4, 4); tensor[:, 1] = 0
        jnp.matmul(tensor, tensor.T)     # tensor.matmul(tensor.T)
        tensor @ tensor.T                # tensor @ tensor.T
        a, b = jnp.arange(12.0).reshape(4, 3), jnp.arange(6.0).reshape(3, 2)
        v = jnp.array([1.0, -1.0, 2.0])
        a @ b                            # torch.mm(a, b)
        a @ v                            # torch.mv(a, v)
        """, {"matmul": 0, "at": 1, "mm": 2, "mv": 3, "a": "a", "b": "b", "v": "v"},
        "one operator covers matmul, mm and mv; on float32 JAX's default matmul precision is "
        "full float32 on CPU (GPUs/TPUs may use lower-precision passes unless "
        "jax_default_matmul_precision is 'highest')."),
    Section("abs", "x = torch.abs(x)", """
        x = jax.random.normal(key, (5, 3))       # x = torch.randn(5, 3)
        x
        x = jnp.abs(x)                   # x = torch.abs(x)
        x
        """, {"x": 0, "abs": "x"}),
    Section("add", "x + y; torch.add(x, y); torch.add(x, y, out=result); y.add_(x)", """
        k_x, k_y = jax.random.split(key)
        x = jax.random.normal(k_x, (5, 3))       # x = torch.randn(5, 3)
        y = jax.random.uniform(k_y, (5, 3))      # y = torch.rand(5, 3)
        x + y                            # x + y
        jnp.add(x, y)                    # torch.add(x, y)
        result = jnp.add(x, y)           # torch.add(x, y, out=result)
        result
        y_before = y
        y = y + x                        # y.add_(x)
        y
        y_before                         # the old array is unchanged
        """, {"x": "x", "y": "y_before", "plus": 0, "add": 1, "out": "result", "add_": "y"},
        "JAX has no out= and no in-place x.op_(): arrays are immutable and functions are pure, "
        "which is what lets jit, grad and vmap transform them. Rebind the name instead; inside "
        "jit XLA reuses buffers itself (and donate_argnums hands over an input's memory)."),
    Section("arithmetic", "torch.sub / torch.div / torch.pow", """
        x = jnp.array([[1.0, -2.0], [3.0, 4.0]])
        y = jnp.array([[2.0, 4.0], [-1.0, 0.5]])
        jnp.subtract(x, y)               # torch.sub(x, y)
        jnp.divide(x, y)                 # torch.div(x, y) (true division)
        jnp.power(x, 2)                  # torch.pow(x, 2)
        jnp.power(x, y)                  # torch.pow(x, y)
        """, {"x": "x", "y": "y", "sub": 0, "div": 1, "pow": 2, "pow_t": 3}),
    Section("clamp", "torch.clamp(x, min=0, max=1)", """
        x = jax.random.normal(key, (5, 3))       # x = torch.randn(5, 3)
        x
        x = jnp.clip(x, 0, 1)            # x = torch.clamp(x, min=0, max=1)
        x
        """, {"x": 0, "clamp": "x"}),
    Section("view", "y = x.view(16); z = x.view(-1, 8)", """
        x = jax.random.normal(key, (4, 4))       # x = torch.randn(4, 4)
        y = x.reshape(16)                # y = x.view(16)
        z = x.reshape(-1, 8)             # z = x.view(-1, 8)
        x.shape, y.shape, z.shape        # x.size(), y.size(), z.size()
        z
        """, {"x": "x", "y": "y", "z": "z", "shapes": 0},
        "torch's view shares storage with x (writing into y changes x); JAX arrays are "
        "immutable, so reshape can neither share observably nor need to: it is the one spelling "
        "for view and reshape, -1 inferred the same way."),
    Section("item", "torch.randn(1).item()", """
        x = jax.random.normal(key, (1,))         # x = torch.randn(1)
        x
        x.item()                         # x.item()
        """, {"x": "x", "item": 1},
        "item() (or float(x)) copies the value to the host, which waits for the device: fine "
        "once per print, costly once per step."),
    Section("numpy", "a.numpy(); torch.from_numpy(n) (shared memory)", """
        a = jnp.ones(5)
        b = np.asarray(a)                # b = a.numpy()
        a = a + 1                        # a.add_(1): in torch, b becomes 2s too
        b
        b.flags.writeable
        writable = np.array(a)           # a writable numpy copy
        writable
        n = np.ones(5)
        t = jnp.asarray(n)               # t = torch.from_numpy(n)
        np.add(n, 1, out=n)              # in torch, t becomes 2s too
        t
        """, {"a": "a", "b": 0, "b_writeable": 1, "writable_copy": "writable", "n": 3, "t": 4},
        "torch and numpy share one buffer both ways, so an in-place change shows on the other "
        "side. JAX arrays are immutable: np.asarray(a) is a read-only view on CPU (nothing can "
        "change it) and a copy from an accelerator, and jnp.asarray(n) copies, so later changes "
        "to n do not reach t. Nothing is shared that could be mutated."),
    Section("device", "torch.cuda.is_available(); x.cuda(); points.to(device='cuda'/'cpu')", """
        jax.devices()
        accel = next((d for d in jax.devices() if d.platform != 'cpu'), None)
        accel is not None                # torch.cuda.is_available()
        device = accel or jax.devices('cpu')[0]
        points = jnp.array([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])
        points_gpu = jax.device_put(points, device)   # points_gpu = points.to(device='cuda')
        points_gpu.device
        with jax.default_device(device):     # torch.tensor([[4.0, 1.0], ...], device='cuda')
            created = jnp.array([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])

        created.device
        doubled = 2 * points_gpu         # results stay where the inputs are
        doubled.device
        points_cpu = jax.device_put(doubled, jax.devices('cpu')[0])   # .to(device='cpu')
        points_cpu
        points_cpu.device
        """, {"devices": 0, "available": 1, "points_gpu_device": 2, "created_device": 3,
              "doubled_device": 4, "points_cpu": "points_cpu", "points_cpu_device": 6},
        "arrays are created on the default device (the GPU when JAX sees one), so "
        "`device='cuda'` and `.cuda()` are usually not needed; jax.device_put moves an array "
        "explicitly and works the same on a CPU-only machine, where device is the CPU."),
    Section("named", "weights_named = torch.tensor([...], names=['channels'])", """
        weights_named = (jnp.array([0.2126, 0.7152, 0.0722]), ('channels',))   # names=['channels']
        weights_named
        weights = weights_named[0]
        k_img, k_batch = jax.random.split(key)
        img_t = jax.random.normal(k_img, (3, 5, 5))          # channels, rows, columns
        batch_t = jax.random.normal(k_batch, (2, 3, 5, 5))   # batch, channels, rows, columns
        (img_t * weights[:, None, None]).sum(-3)     # the book's unnamed way: unsqueeze, sum(-3)
        letters = {'channels': 'c', 'rows': 'h', 'columns': 'w'}
        def dims(*names):                # einsum subscripts from dimension names
            return '...' + ''.join(letters[n] for n in names)

        def to_gray(img, weights):       # sum over 'channels', by name; '...' = any batch dims
            image, gray = dims('channels', 'rows', 'columns'), dims('rows', 'columns')
            return jnp.einsum(f"{image},{dims('channels')}->{gray}", img, weights)

        to_gray(img_t, weights)          # weights_named.align_as(img_named) ... .sum('channels')
        batch_gray = to_gray(batch_t, weights)
        batch_gray.shape
        """, {"weights": "weights", "weights_named": 0, "img_t": "img_t", "batch_t": "batch_t",
              "gray_broadcast": 1, "gray": 2, "batch_gray": "batch_gray"},
        "seed 003 prints Out[7] tensor([0.2126, 0.7152, 0.0722], names=('channels',)): the same "
        "numbers and the same name here, as an (array, names) pair. JAX has no named tensors "
        "(and PyTorch's were experimental: 2.13 no longer accepts names=). einsum with "
        "subscripts built from dimension names does what align_as + sum('channels') did: dims "
        "are matched by name, not position, and '...' carries any batch dims."),
    Section("save", "torch.save(points, path); torch.save(points, f); torch.load(path)", """
        import io, os
        points = jnp.array([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])
        os.makedirs($out, exist_ok=True)
        path = os.path.join($out, 'ourpoints.npy')
        np.save(path, np.asarray(points), allow_pickle=False)          # torch.save(points, path)
        loaded_path = jnp.asarray(np.load(path, allow_pickle=False))   # torch.load(path)
        loaded_path
        with open(path, 'wb') as f:      # with open(path, 'wb') as f: torch.save(points, f)
            np.save(f, np.asarray(points), allow_pickle=False)

        with open(path, 'rb') as f:
            loaded_file = jnp.asarray(np.load(f, allow_pickle=False))

        loaded_file
        buffer = io.BytesIO()            # any file-like object works
        np.save(buffer, np.asarray(points), allow_pickle=False)
        len(buffer.getvalue())
        """, {"path": "path", "points": "points", "loaded_path": "loaded_path",
              "loaded_file": "loaded_file", "nbytes_in_memory_file": 2},
        "torch.save pickles, and unpickling can run code (next section); .npy is a plain header "
        "+ raw bytes (allow_pickle=False refuses object arrays), readable by numpy, "
        "torch.from_numpy and anything else. Dicts of arrays (state_dicts) go to safetensors, "
        "training state to orbax checkpoints."),
    Section("save_model", "torch.save(model, path); model = torch.load(path) "
            "(and the state_dict pair)", """
        import json, os, pickle
        class Payload:                   # any object can say how it is rebuilt on load...
            def __reduce__(self):
                return (print, ('this ran while loading',))

        blob = pickle.dumps(Payload())   # torch.save(model, path) pickles the object like this
        b'print' in blob and b'this ran while loading' in blob   # the file names a function...
        # ...that unpickling calls: pickle.loads(blob), like torch.load(path,
        # weights_only=False), would run print('this ran while loading'). Never done here.
        from jaxnets import checkpoint, models
        model = models.two_layer_sequential(hidden=100, out=10)   # seed 002's Sequential
        variables = model.init(key, jnp.zeros((1, 1000)))
        os.makedirs($out, exist_ok=True)
        path = os.path.join($out, 'model.safetensors')
        checkpoint.export_state_dict(path, variables, rename=models.sequential_rename)
        config = {'in_features': 1000, 'hidden': 100, 'out': 10}   # what rebuilds the module
        with open(os.path.join($out, 'model.json'), 'w') as f:
            json.dump(config, f)

        with open(os.path.join($out, 'model.json')) as f:   # model = torch.load(path), safely:
            config = json.load(f)

        rebuilt = models.two_layer_sequential(hidden=config['hidden'], out=config['out'])
        template = rebuilt.init(jax.random.key(1), jnp.zeros((1, config['in_features'])))
        loaded = checkpoint.import_state_dict(path, template, rename=models.sequential_rename)
        x = jax.random.normal(jax.random.key(2), (2, 1000))
        y = rebuilt.apply(loaded, x)
        y
        bool(jnp.array_equal(y, model.apply(variables, x)))
        """, {"pickle_names_print": 0, "path": 1, "config": "config", "x": "x", "y": "y",
            "same_outputs": 3},
        "seed 002 saves the whole model, torch.save(model, path), and loads it with "
        "torch.load(path). That file is a pickle, and unpickling runs whatever the file says "
        "(the Payload above names print and its argument; a hostile file could name anything), "
        "which is why torch.load "
        "refuses whole models by default since torch 2.6 (weights_only=True) and why jaxnets "
        "never pickles. The safe pair is the seed's other line, torch.save(model.state_dict(), "
        "path): the parameters as plain arrays in safetensors (PyTorch's key names and layouts: "
        "torch's Sequential.load_state_dict(safetensors.torch.load_file(path)) accepts this "
        "file), and the config that rebuilds the module as JSON. Loading rebuilds the module "
        "from the config and fills its parameters; it gives the same outputs."),
)


# --- the experiment ------------------------------------------------------------------------------


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return run_tour("tensors", SECTIONS, section=config.section, list_only=config.list,
                    seed=config.seed, out=config.options.out, progress=not config.options.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
