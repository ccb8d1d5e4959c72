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


def test_each_state_takes_the_same_chunks_in_the_same_order_however_threads_race() -> None:
    """Statistics merge the workers' states in order: for the same sums in every run, chunk j
    must go to state j % workers, in order, whichever thread happens to read it."""
    import random
    import time

    import torch

    from ckpt_gui.core.chunks import _workers, drain, map_chunks

    workers = _workers()[1]
    t = torch.arange(64 * 1000, dtype=torch.float32)
    jitter = random.Random(7)

    def step(state: list[float], chunk: torch.Tensor) -> None:
        time.sleep(jitter.random() / 500)  # threads overtake one another at random
        state.append(float(chunk[0]) // 1000)

    for _ in range(3):
        states = drain(map_chunks(t, 1000, lambda _: [], step))
        assert len(states) == workers
        for which, state in enumerate(states):
            assert state == list(range(which, 64, workers)), which
