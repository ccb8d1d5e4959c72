"""Hostile checkpoint folders: a Hugging Face sharded folder and a DCP folder, real ones, then
bent (FIFOs, device links, storage paths that leave the folder, shards that link elsewhere).

``run_cli`` runs ``ckpt_gui.cli.main`` in a child process with a timeout and a memory cap, so a
regression that blocks on a FIFO or reads ``/dev/zero`` fails its test instead of hanging or
exhausting the machine running the suite.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.core.checkpoints import write_sharded_safetensors

REPO = Path(__file__).resolve().parents[2]
SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"
DCP_DATA = "__0_0.distcp"

# The memory cap is set after the imports (torch maps gigabytes of address space on import): it
# bounds what the commands may allocate on top of that before they get a MemoryError. Several
# commands share one child, since importing torch is most of its time.
_CHILD = """
import contextlib, io, json, resource, sys
import torch
from ckpt_gui.cli import main
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
cap = vm + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
results = []
for args in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results.append([code, out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(results))
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(
    *commands: list[str | Path], timeout: float = 30, headroom: int = 2 * 2**30
) -> list[Result]:
    """``ckpt_gui.cli.main(args)`` for each of ``commands``, in one child process; a hang raises
    ``TimeoutExpired``, a crash of the child fails on its stderr."""
    arg_lists = json.dumps([[str(a) for a in args] for args in commands])
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(headroom), arg_lists],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return [Result(*r) for r in json.loads(proc.stdout)]


def hf_folder(root: Path, name: str = "hf_model") -> Path:
    """A two-shard safetensors model folder with its index (``SHARD_1``, ``SHARD_2``, ``INDEX``)."""
    folder = root / name
    tensors = {f"layer{i}.weight": torch.arange(12.0).reshape(3, 4) + i for i in range(4)}
    write_sharded_safetensors(folder, tensors, shards=2)
    return folder


def dcp_folder(root: Path, name: str = "dcp") -> Path:
    """A real ``torch.distributed.checkpoint`` folder (``.metadata`` and ``DCP_DATA``)."""
    import torch.distributed.checkpoint as dcp

    folder = root / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(
            {"w": torch.arange(6.0), "b": torch.ones(2)}, checkpoint_id=str(folder), no_dist=True
        )
    return folder


def rewrite_storage_paths(folder: Path, new_path: Callable[[str], str]) -> None:
    """Point every tensor of a DCP folder at ``new_path(old relative_path)``. The ``.metadata``
    is our own, written by torch a moment ago: plain pickle is fine here."""
    meta_path = folder / ".metadata"
    with open(meta_path, "rb") as f:
        meta = pickle.load(f)  # noqa: S301 - a file this test just wrote
    for info in meta.storage_data.values():
        info.relative_path = new_path(info.relative_path)
    with open(meta_path, "wb") as f:
        pickle.dump(meta, f)


def replace_by_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def move_out_and_link(path: Path, target: Path, *, hard: bool = False) -> None:
    """Move ``path`` to ``target`` and leave a link to it in its place (a Hugging Face cache
    snapshot holds symlinks to blobs like this)."""
    path.rename(target)
    if hard:
        os.link(target, path)
    else:
        path.symlink_to(target)
