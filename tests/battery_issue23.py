"""Issue 23's hostile battery, sections 4-6: run as a user would, classify each outcome.

    python tests/battery_issue23.py [--only NAME ...]     # from the repository root

Not part of the pytest suite (its cases are tests there); this runs them all as commands, in
subprocesses with a time limit, and prints one row per case and the counts:
  one-line error   exit 2, one line on stderr, naming what the case expects (the flag, the fix)
  correct result   exit 0 with the right outputs
  anything else    a traceback, a hang, a wrong result with exit 0, a misleading message
Each case says what counts as right for it (`expect`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from loopback import running  # (tests/ is on the path from here on)

FASHION = "/usr/share/datasets/fashion-mnist"
TIMEOUT = 120


def run(argv, env=None, timeout=TIMEOUT, cwd=None):
    """(exit status or 'hang', stdout, stderr lines)."""
    full = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    try:
        p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                           cwd=cwd or ROOT, env=full, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "hang", "", []
    return p.returncode, p.stdout, [line for line in p.stderr.splitlines() if line.strip()]


def one_line(code, err, *needles) -> tuple[str, str]:
    """Classify an expected refusal."""
    if code == "hang":
        return "anything else", "hang"
    if code == 2 and len(err) == 1 and all(n in err[0] for n in needles):
        return "one-line error", err[0][:160]
    text = " | ".join(err)[-300:]
    if code == 2 and len(err) == 1:
        return "anything else", f"misleading (want {needles}): {text}"
    return "anything else", f"exit {code}: {text}"


CASES = {}


def case(section):
    def register(fn):
        CASES[fn.__name__] = (section, fn)
        return fn
    return register


# --- section 4: every restored byte covered -------------------------------------------------

def _linear(tmp, *extra):
    return ["experiments.linear_classifier", "--batch-size", "6000", "--quiet",
            "--no-progress", *extra]


@functools.lru_cache
def _linear_checkpoint(tmp):
    """A linear_classifier checkpoint at epoch 2 and the uninterrupted 3-epoch reference."""
    base = os.path.join(tmp, "lc_base")
    code, _, err = run(_linear(tmp, "--epochs", "2", "--checkpoint-dir", base, "--out",
                               os.path.join(tmp, "lc_o1")))
    assert code == 0, err
    code, _, err = run(_linear(tmp, "--epochs", "3", "--out", os.path.join(tmp, "lc_ref")))
    assert code == 0, err
    with open(os.path.join(tmp, "lc_ref", "metrics.json")) as f:
        return base, json.load(f)


def _damaged_resume(tmp, name, damage):
    base, ref = _linear_checkpoint(tmp)
    folder = os.path.join(tmp, name)
    shutil.copytree(base, folder)
    step = max(int(n) for n in os.listdir(folder) if n.isdigit())
    damage(os.path.join(folder, str(step)))
    out = os.path.join(tmp, name + "_o")
    code, _, err = run(_linear(tmp, "--epochs", "3", "--checkpoint-dir", folder, "--resume",
                               "--out", out))
    if code == 0:
        with open(os.path.join(out, "metrics.json")) as f:
            got = json.load(f)
        same = got["per_epoch"] == ref["per_epoch"] and got["losses"] == ref["losses"]
        return ("correct result", "accepted, identical to the uninterrupted run") if same else (
            "anything else", "exit 0, results changed")
    return one_line(code, err, "damaged", "delete that step folder")


def _flip_text(path, old, new, occurrence=0):
    with open(path, "rb") as f:
        data = f.read()
    at = -1
    for _ in range(occurrence + 1):
        at = data.index(old, at + 1)
    with open(path, "wb") as f:
        f.write(data[:at] + new + data[at + len(old):])


def _flip_in_meta(key, step_dir):
    """Flip the first digit after `key` in meta/metadata (the JSON orbax wrote)."""
    path = os.path.join(step_dir, "meta", "metadata")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.index(key.encode()) + len(key)
    while not chr(data[at]).isdigit():
        at += 1
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    with open(path, "wb") as f:
        f.write(bytes(data))


@case(4)
def meta_logs_digit(tmp):
    """The issue's case: one digit of a logged loss in meta/metadata."""
    return _damaged_resume(tmp, "m_logs", functools.partial(_flip_in_meta, '"loss": '))


@case(4)
def meta_fingerprint_digit(tmp):
    return _damaged_resume(tmp, "m_fp", functools.partial(_flip_in_meta, '"data": "'))


@case(4)
def meta_may_differ_setting(tmp):
    """keep_checkpoints may differ on resume, so a flip there was never compared."""
    return _damaged_resume(tmp, "m_keep", functools.partial(_flip_in_meta, '"keep_checkpoints": '))


@case(4)
def meta_key_impl(tmp):
    return _damaged_resume(tmp, "m_impl", lambda d: _flip_text(
        os.path.join(d, "meta", "metadata"), b"threefry2x32", b"threefry2x33"))


@case(4)
def checkpoint_metadata_timestamp(tmp):
    """A digit of orbax's commit timestamp (_CHECKPOINT_METADATA): nothing restored uses it."""
    def damage(d):
        path = os.path.join(d, "_CHECKPOINT_METADATA")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        at = data.index(b'"commit_timestamp_nsecs": ') + 30
        data[at] = ord("1") if data[at] != ord("1") else ord("2")
        with open(path, "wb") as f:
            f.write(bytes(data))
    return _damaged_resume(tmp, "m_ts", damage)


@case(4)
def state_tree_metadata_byte(tmp):
    def damage(d):
        path = os.path.join(d, "state", "_METADATA")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        at = data.index(b'"key_type": 1')
        data[at + len(b'"key_type": ')] = ord("2")
        with open(path, "wb") as f:
            f.write(bytes(data))
    return _damaged_resume(tmp, "m_tree", damage)


@case(4)
def commit_success_byte(tmp):
    def damage(d):
        path = os.path.join(d, "commit_success.txt")
        with open(path, "r+b") as f:
            f.seek(3)
            b = f.read(1)
            f.seek(3)
            f.write(bytes([b[0] ^ 1]))
    return _damaged_resume(tmp, "m_commit", damage)


# --- section 5: every path flag checked before any work -------------------------------------

def _mnist(*extra):
    return ["experiments.mnist", "--dataset", "fashion_mnist", "--steps", "20", "--quiet",
            *extra]


@case(5)
def checkpoint_dir_empty(tmp):
    cwd = os.path.join(tmp, "cwd_ck")
    os.makedirs(cwd)
    code, _, err = run(_mnist("--checkpoint-every", "10", "--checkpoint-dir", "", "--out",
                              os.path.join(tmp, "o_ck")), cwd=cwd)
    if code == 0 and os.listdir(cwd):
        return "anything else", f"exit 0, wrote {sorted(os.listdir(cwd))} into the cwd"
    return one_line(code, err, "--checkpoint-dir")


@case(5)
def out_empty(tmp):
    return one_line(*_no_stdout(run(_mnist("--out", ""), cwd=tmp)), "--out")


def _no_stdout(result):
    code, _, err = result
    return code, err


@case(5)
def out_longer_than_path_max(tmp):
    return one_line(*_no_stdout(run(_mnist("--out", os.path.join(tmp, "a" * 5000)))), "--out")


@case(5)
def out_part_longer_than_name_max(tmp):
    return one_line(*_no_stdout(run(_mnist("--out", os.path.join(tmp, "b" * 300, "x")))),
                    "--out")


@case(5)
def out_in_proc(tmp):
    return one_line(*_no_stdout(run(_mnist("--out", "/proc/x"))), "--out")


@case(5)
def out_in_sys_kernel(tmp):
    return one_line(*_no_stdout(run(_mnist("--out", "/sys/kernel/x"))), "--out")


def _resnet(tmp, *extra):
    return ["experiments.resnet_step", "--size", "33", "--quiet", "--out",
            os.path.join(tmp, "o_resnet"), *extra]


@case(5)
def export_in_proc(tmp):
    return one_line(*_no_stdout(run(_resnet(tmp, "--export", "/proc/x.safetensors"))),
                    "--export")


@case(5)
def tensorboard_empty(tmp):
    code, _, err = run(_mnist("--out", os.path.join(tmp, "o_tb"), "--tensorboard", ""), cwd=tmp)
    if code == 0:
        return "anything else", "exit 0, TensorBoard silently off"
    return one_line(code, err, "--tensorboard")


@case(5)
def weights_fifo(tmp):
    fifo = os.path.join(tmp, "w.safetensors")
    os.mkfifo(fifo)
    return one_line(*_no_stdout(run(["experiments.cifar10", "--quiet", "--weights", fifo,
                                     "--out", os.path.join(tmp, "o_fifo")], timeout=30)),
                    "--weights", "not a regular file")


@case(5)
def export_existing_fifo(tmp):
    """Variant: --export naming an existing FIFO (or device): the atomic rename would replace
    it with a regular file (as root, /dev/null)."""
    fifo = os.path.join(tmp, "e.safetensors")
    os.mkfifo(fifo)
    code, _, err = run(_resnet(tmp, "--export", fifo))
    if code == 0:
        import stat
        kind = "FIFO" if stat.S_ISFIFO(os.lstat(fifo).st_mode) else "regular file"
        return "anything else", f"exit 0, the FIFO is now a {kind}"
    return one_line(code, err, "--export")


@case(5)
def export_name_250_bytes(tmp):
    """Variant: a file name that fits NAME_MAX, but its temporary name does not."""
    path = os.path.join(tmp, "c" * 240 + ".safetensors")
    code, _, err = run(_resnet(tmp, "--export", path))
    if code == 0 and os.path.isfile(path):
        return "correct result", "exported"
    return one_line(code, err, "--export")


@case(5)
def data_dir_empty(tmp):
    return one_line(*_no_stdout(run(_mnist("--data-dir", "", "--out",
                                           os.path.join(tmp, "o_dd")))), "--data-dir")


@case(5)
def csv_file_fifo(tmp):
    fifo = os.path.join(tmp, "x.csv")
    os.mkfifo(fifo)
    return one_line(*_no_stdout(run(["experiments.custom_dataset", "--csv-file", fifo,
                                     "--txt-file", fifo, "--out", os.path.join(tmp, "o_csv")],
                                    timeout=30)), "--csv-file")


@case(5)
def checkpoint_dir_in_proc(tmp):
    return one_line(*_no_stdout(run(_mnist("--checkpoint-dir", "/proc/x/c", "--out",
                                           os.path.join(tmp, "o_ckp")))), "--checkpoint-dir")


@case(5)
def tensorboard_in_sys(tmp):
    return one_line(*_no_stdout(run(_mnist("--tensorboard", "/sys/kernel/tb", "--out",
                                           os.path.join(tmp, "o_tbs")))), "--tensorboard")


@case(5)
def out_under_a_symlink_loop(tmp):
    loop = os.path.join(tmp, "loop")
    os.symlink(loop, loop)
    return one_line(*_no_stdout(run(_mnist("--out", os.path.join(loop, "x")))), "--out")


@case(5)
def weights_char_device(tmp):
    return one_line(*_no_stdout(run(_resnet(tmp, "--weights", "/dev/zero"), timeout=60)),
                    "--weights", "not a regular file")


# --- section 6: messages that send the user the right way -----------------------------------

def _cache_env(**kw):
    env = {"JAX_COMPILATION_CACHE_DIR": "", "JAX_COMPILATION_CACHE_MAX_SIZE": ""}
    env.update(kw)
    return env


@case(6)
def cache_home_unwritable(tmp):
    """HOME (here XDG_CACHE_HOME) where no folder can be made: the run goes on, one line that
    does not send the user to delete a folder that does not exist."""
    blocker = os.path.join(tmp, "home_file")
    with open(blocker, "w") as f:
        f.write("x")
    env = _cache_env(XDG_CACHE_HOME=os.path.join(blocker, "cache"))
    env = {k: v for k, v in env.items() if v}
    code, _, err = _run_clean_env(_mnist("--out", os.path.join(tmp, "o_home")), env)
    ours = [line for line in err if line.startswith("python -m experiments")]
    if code == 0 and len(ours) == 1 and "delete" not in ours[0] and "compile cache" in ours[0]:
        others = len(err) - len(ours)
        return "correct result", ours[0][:160] + (f" (+{others} lines of matplotlib's own "
                                                  "about its folder there)" if others else "")
    return "anything else", f"exit {code}: {' | '.join(err)[-300:]}"


def _run_clean_env(argv, env):
    drop = ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE", "XDG_CACHE_HOME")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env, PYTHONPATH=ROOT)
    try:
        p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                           cwd=ROOT, env=full, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "hang", "", []
    return p.returncode, p.stdout, [line for line in p.stderr.splitlines() if line.strip()]


@case(6)
def cache_dir_is_a_file(tmp):
    path = os.path.join(tmp, "my_notes.txt")
    with open(path, "w") as f:
        f.write("precious")
    code, _, err = _run_clean_env(_mnist("--out", os.path.join(tmp, "o_cf")),
                                  {"JAX_COMPILATION_CACHE_DIR": path})
    with open(path) as f:
        intact = f.read() == "precious"
    if code == 0 and intact and len(err) == 1 and "delete" not in err[0]:
        return "correct result", err[0][:160]
    return "anything else", f"exit {code}: {' | '.join(err)[-300:]}"


@case(6)
def lock_of_an_unrelated_live_pid(tmp):
    """A .run.lock holding pid 1 (alive, not ours: pid reuse after a reboot), in the old
    'pid host' form: refused, with the fix (delete the lock file) in the message."""
    out = os.path.join(tmp, "o_lock")
    os.makedirs(out)
    with open(os.path.join(out, ".run.lock"), "w") as f:
        f.write(f"1 {socket.gethostname()}\n")
    code, _, err = run(_mnist("--out", out))
    return one_line(code, err, "--out", "delete", ".run.lock")


@case(6)
def lock_pid_reused(tmp):
    """Variant: a lock written by this version whose pid now belongs to another process (its
    start time differs): taken over, the run completes."""
    out = os.path.join(tmp, "o_lock2")
    os.makedirs(out)
    from jaxnets import checkpoint
    path = checkpoint.lock_folder(out, ".run.lock")
    with open(path) as f:
        words = f.read().split()
    words[0] = "1"     # pid 1 is alive, but it is not the process that wrote the lock
    with open(path, "w") as f:
        f.write(" ".join(words) + "\n")
    code, _, err = run(_mnist("--out", out))
    if code == 0 and os.path.isfile(os.path.join(out, "metrics.json")):
        return "correct result", "stale lock taken over"
    return one_line(code, err, "--out")


_KILLED_WRITER = """
import os, signal, sys
from jaxnets import atomic
with atomic.replacing(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half a png")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@case(6)
def stale_temporary_after_sigkill(tmp):
    out = os.path.join(tmp, "o_kill")
    os.makedirs(out)
    p = subprocess.run([sys.executable, "-c", _KILLED_WRITER,
                        os.path.join(out, "loss_curve.png")], env={**os.environ,
                       "PYTHONPATH": ROOT}, cwd=ROOT, check=False)
    assert p.returncode == -signal.SIGKILL
    left = [n for n in os.listdir(out) if n != "loss_curve.png"]
    assert left, "the killed writer left nothing"
    code, _, _ = run(_mnist("--out", out))
    now = sorted(n for n in os.listdir(out) if n.startswith("."))
    if code == 0 and not now:
        return "correct result", f"removed {left}"
    return "anything else", f"exit {code}, left {now}"


@case(6)
def failed_load_leaves_no_out(tmp):
    empty = os.path.join(tmp, "empty_data")
    os.makedirs(empty)
    out = os.path.join(tmp, "o_fail", "run")
    code, _, err = run(_mnist("--data-dir", empty, "--out", out))
    kind, note = one_line(code, err, "--data-dir")
    if os.path.exists(os.path.join(tmp, "o_fail")):
        return "anything else", f"{note}; left {os.path.join(tmp, 'o_fail')} behind"
    return kind, note


class _Mirror(http.server.SimpleHTTPRequestHandler):
    """A loopback mirror with one misbehaviour per path prefix."""

    def log_message(self, *args):
        pass

    def _misbehave(self) -> bool:
        if self.path.startswith("/ftp/") or (self.path.startswith("/getftp/")
                                             and self.command == "GET"):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/" + os.path.basename(self.path))
        elif self.path.startswith("/loop/"):
            self.send_response(302)
            self.send_header("Location", self.path)
        elif self.path.startswith("/file/"):
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
        else:
            return False
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_HEAD(self):
        if self._misbehave():
            return
        if self.path.startswith("/nohead/"):
            self.send_error(403, "HEAD not allowed")
            return
        if self.path.startswith("/hangup/"):
            self.close_connection = True
            return
        self.path = "/" + self.path.split("/", 2)[2]
        super().do_HEAD()

    def do_GET(self):
        if self._misbehave():
            return
        self.path = "/" + self.path.split("/", 2)[2]
        super().do_GET()


def _mirror(directory):
    """The misbehaving mirror on loopback (`loopback.running`); yields its base URL."""
    return running(functools.partial(_Mirror, directory=directory))


@functools.lru_cache
def _mirror_files(tmp):
    from conftest import make_idx_dir

    d = make_idx_dir(os.path.join(tmp, "mirror"), n_train=64, n_test=32, gz=True)
    tsv = os.path.join(tmp, "checksums.tsv")
    with open(tsv, "w") as f:
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as blob_file:
                blob = blob_file.read()
            f.write(f"{name}\t{len(blob)}\t{hashlib.sha256(blob).hexdigest()}\n")
    return d, tsv


def _download(tmp, prefix, *extra):
    d, tsv = _mirror_files(tmp)
    tfds = os.path.join(tmp, f"tfds_{prefix}")
    with _mirror(d) as url:
        env = {"JAXNETS_DATA_MIRROR": f"{url}/{prefix}", "JAXNETS_DATA_CHECKSUMS": tsv,
               "TFDS_DATA_DIR": tfds}
        return run(["experiments.mnist", "--dataset", "mnist", "--steps", "5", "--batch-size",
                    "8", "--out", os.path.join(tmp, f"o_{prefix}"), *extra], env=env)


@case(6)
def redirect_to_ftp(tmp):
    code, _, err = _download(tmp, "ftp", "--quiet")
    kind, note = one_line(code, err, "ftp://")
    if kind == "one-line error" and "http" not in err[0].split("ftp://")[0][-200:]:
        return "anything else", "misleading: " + note
    return kind, note


@case(6)
def download_redirected_to_ftp(tmp):
    """Variant: HEAD answers, the GET of the download itself is sent on to ftp://."""
    return one_line(*_no_stdout(_download(tmp, "getftp", "--quiet")), "ftp://")


@case(6)
def no_compile_cache_with_jax_env(tmp):
    """Variant: --no-compile-cache while $JAX_COMPILATION_CACHE_DIR is set (JAX reads it
    itself): nothing may be written there."""
    cache = os.path.join(tmp, "jcc")
    code, _, _ = _run_clean_env(_mnist("--out", os.path.join(tmp, "o_ncc"),
                                         "--no-compile-cache"),
                                {"JAX_COMPILATION_CACHE_DIR": cache,
                                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"})
    written = os.listdir(cache) if os.path.isdir(cache) else []
    if code == 0 and not written:
        return "correct result", "nothing cached"
    return "anything else", f"exit {code}, {len(written)} cache entries written"


@case(6)
def redirect_loop(tmp):
    return one_line(*_no_stdout(_download(tmp, "loop", "--quiet")), "redirect")


@case(6)
def redirect_to_file_url(tmp):
    return one_line(*_no_stdout(_download(tmp, "file", "--quiet")), "file://")


@case(6)
def head_rejected_get_served(tmp):
    code, out, err = _download(tmp, "nohead", "--quiet")
    if code == 0 and "test accuracy" in out:
        return "correct result", "downloaded"
    return "anything else", f"exit {code}: {' | '.join(err)[-300:]}"


@case(6)
def head_hangs_up_get_served(tmp):
    code, out, err = _download(tmp, "hangup", "--quiet")
    if code == 0 and "test accuracy" in out:
        return "correct result", "downloaded"
    return "anything else", f"exit {code}: {' | '.join(err)[-300:]}"


@case(6)
def quiet_download_prints_nothing_of_tfds(tmp):
    code, out, err = _download(tmp, "plain", "--quiet")
    noise = [line for line in err + out.splitlines()
             if "Generating" in line or "Shuffling" in line or "Downloading and preparing" in
             line or "Subsequent calls" in line]
    if code == 0 and not noise:
        return "correct result", "quiet"
    return "anything else", f"exit {code}, {len(noise)} lines of tfds output"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="battery23-")
    counts: dict[str, int] = {}
    try:
        for name, (section, fn) in CASES.items():
            if args.only and name not in args.only:
                continue
            t0 = time.monotonic()
            try:
                kind, note = fn(tmp)
            except Exception as e:  # noqa: BLE001 (the battery's own failure: say it, go on)
                kind, note = "anything else", f"battery error {type(e).__name__}: {e}"
            counts[kind] = counts.get(kind, 0) + 1
            print(f"{section}  {name:<38} {kind:<15} {time.monotonic() - t0:5.1f}s  {note}",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"cases {sum(counts.values())}: " + ", ".join(f"{k} {v}" for k, v in
                                                         sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
