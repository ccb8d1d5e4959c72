"""Property-based fuzzing: real checkpoints, mutated (byte flips, truncation, splices), through
every command. No crash, no hang, no traceback, and the source never changes."""

from __future__ import annotations

import contextlib
import io
import signal
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from ckpt_gui.cli import main
from tests.core.checkpoints import trained

CASE_TIMEOUT_S = 20


def _seeds() -> dict[str, bytes]:
    model, opt = trained("adam")
    buf = io.BytesIO()
    torch.save({"epoch": 2, "model": model.state_dict(), "optimizer": opt.state_dict()}, buf)
    legacy = io.BytesIO()
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    safetensors = save({k: v.contiguous() for k, v in model.state_dict().items()})
    return {"zip": buf.getvalue(), "legacy": legacy.getvalue(), "safetensors": safetensors}


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            start = draw(st.integers(0, len(other) - 1))
            data[at:at] = other[start : start + draw(st.integers(1, 512))]
        elif kind == "zero" and data:
            data[at : at + draw(st.integers(1, 64))] = bytes(min(64, len(data) - at))
    return name, bytes(data)


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int):
    def on_alarm(signum, frame):  # noqa: ARG001
        raise _Hang(f"a command ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _commands(path: Path, work: Path) -> list[list[str]]:
    from ckpt_gui.cli import _available_commands

    available = _available_commands()
    runs = [["inspect", str(path), "--json"], ["inspect", str(path)]]
    if "stats" in available:
        runs.append(["stats", str(path), "--json"])
    if "scan" in available:
        runs.append(["scan", str(path), "--json"])
    if "diff" in available:
        runs.append(["diff", str(path), str(path), "--json"])
    if "export" in available:
        runs.append(["export", str(path), str(work / "out.safetensors"), "--format", "safetensors"])
        runs.append(["export", str(path), str(work / "out.pt"), "--cpu-copy"])
    return runs


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutated())
def test_every_command_survives_mutated_files(tmp_path_factory, capsys, case) -> None:
    name, data = case
    work = tmp_path_factory.mktemp("fuzz")
    path = work / f"mutated-{name}.pt"
    path.write_bytes(data)
    mtime = path.stat().st_mtime_ns
    for argv in _commands(path, work):
        with _deadline(CASE_TIMEOUT_S):
            code = main(argv)
        out = capsys.readouterr()
        assert code in (0, 1, 2), (argv, code)
        assert "Traceback" not in out.err and "Traceback" not in out.out
        if code == 2:
            assert out.err.count("\n") == 1, (argv, out.err)
            assert "unexpected" not in out.err, (argv, out.err)
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_unmutated_seeds_open(tmp_path: Path, capsys, name: str) -> None:
    path = tmp_path / f"seed-{name}.pt"
    path.write_bytes(SEEDS[name])
    assert main(["inspect", str(path), "--json"]) == 0
    assert '"tensors"' in capsys.readouterr().out
