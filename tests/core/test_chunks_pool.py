"""The statistics worker pool (core/chunks.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_worker_pool_is_sized_from_torch_even_when_first_used_serially() -> None:
    """A run's positions start the pool from inside ``serial_torch``: it must still get torch's
    thread count, not the one thread that section runs on (found as a trajectory on one core)."""
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from ckpt_gui.core import chunks\n"
        "with chunks.serial_torch():\n"
        "    n = chunks._workers()[1]\n"
        "print(n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"
