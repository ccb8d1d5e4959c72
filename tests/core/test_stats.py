"""Per-tensor statistics against float64 numpy references, on tensors read back from real files."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.chunks import flat_chunks
from ckpt_gui.core.errors import Cancelled, CorruptError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import (
    Progress,
    StatsFailed,
    StatsResult,
    TensorStats,
    iter_stats,
    tensor_stats,
    to_json,
)
from ckpt_gui.core.tree import Node, TensorInfo

NAN, INF = float("nan"), float("inf")


def reference(t: torch.Tensor) -> dict[str, float | int | None]:
    """The statistics of docs/cli.md computed plainly in float64 numpy."""
    if t.is_complex():
        a = np.abs(t.to(torch.complex128).numpy()).ravel()
    else:
        a = t.to(torch.float64).numpy().ravel()
    finite = a[np.isfinite(a)]
    n = finite.size
    return {
        "min": finite.min() if n else None,
        "max": finite.max() if n else None,
        "mean": finite.mean() if n else None,
        "std": finite.std(ddof=1) if n > 1 else None,
        "l2": math.sqrt(float(np.sum(finite * finite))),
        "absmax": np.abs(finite).max() if n else None,
        "zeros": int(np.sum(a == 0)),
        "nan": int(np.isnan(a).sum()),
        "posinf": int(np.sum(a == np.inf)),
        "neginf": int(np.sum(a == -np.inf)),
    }


def assert_matches(stats: TensorStats, t: torch.Tensor, rtol: float = 1e-5) -> None:
    ref = reference(t)
    assert stats.numel == t.numel()
    for name, want in ref.items():
        got = getattr(stats, name)
        if want is None:
            assert got is None, name
        elif isinstance(want, int):
            assert got == want, name
        else:
            assert got == pytest.approx(float(want), rel=rtol, abs=1e-12), name


def stats_from_file(path: Path, **kwargs: object) -> dict[str, TensorStats]:
    with open_checkpoint(path) as ckpt:
        events = list(iter_stats(ckpt.tensors(), **kwargs))  # type: ignore[arg-type]
    return {e.key: e.stats for e in events if isinstance(e, StatsResult)}


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(300, 70, generator=g)
    return {
        "float32": base,
        "float16": (base * 0.02).half(),
        "bfloat16": (base + 3).bfloat16(),
        "float64": base.double() * 1e3,
        "int8": (base * 40).to(torch.int8),
        "uint8": (base.abs() * 60).to(torch.uint8),
        "int16": (base * 5000).to(torch.int16),
        "int32": (base * 1e6).to(torch.int32),
        "int64": (base * 1e12).to(torch.int64),
        "bool": base > 0.5,
        "complex64": torch.complex(base, base.flip(0)),
    }


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_every_dtype_matches_float64_reference(tmp_path: Path, fmt: str) -> None:
    tensors = sample_tensors()
    if fmt == "safetensors":
        tensors.pop("complex64")  # safetensors has no complex type
        save_file(tensors, tmp_path / "m.safetensors")
        path = tmp_path / "m.safetensors"
    else:
        torch.save(tensors, tmp_path / "m.pt")
        path = tmp_path / "m.pt"
    # 1000-element chunks: every tensor spans many chunks, merged moments included.
    got = stats_from_file(path, chunk_elems=1000)
    assert sorted(got) == sorted(tensors)
    for key, t in tensors.items():
        assert got[key].dtype == key
        assert_matches(got[key], t)
    assert not got["float32"].complex_magnitude
    if fmt == "pt":
        assert got["complex64"].complex_magnitude
    assert isinstance(got["int64"].min, int) and got["int64"].min == int(tensors["int64"].min())
    assert got["bool"].min == 0 and got["bool"].max == 1


def test_nan_inf_and_zeros_are_counted_exactly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.randn(50_000, generator=g)
    t[torch.randperm(50_000, generator=g)[:300]] = 0.0
    t[::997] = NAN  # spread over many chunks
    t[5::1999] = INF
    t[7::2999] = -INF
    t[11] = -0.0
    torch.save({"w": t, "h": t.half(), "b": t.bfloat16()}, tmp_path / "bad.pt")
    got = stats_from_file(tmp_path / "bad.pt", chunk_elems=4096)
    for key, src in {"w": t, "h": t.half(), "b": t.bfloat16()}.items():
        s = got[key]
        assert (s.nan, s.posinf, s.neginf) == (51, 26, 17)
        assert s.zeros == int((src == 0).sum()) and s.zeros >= 300
        assert s.sparsity == pytest.approx(s.zeros / 50_000)
        assert s.finite == 50_000 - 51 - 26 - 17
        assert_matches(s, src)  # one NaN does not hide the finite figures


def test_accuracy_when_the_mean_dwarfs_the_spread(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    tensors = {
        "offset": 1e4 + torch.randn(700_000, generator=g),
        "layernorm": 1 + 1e-3 * torch.randn(700_000, generator=g),
        "two_levels": torch.cat([torch.randn(400_000, generator=g), 1e3 + torch.zeros(300_000)]),
    }
    torch.save(tensors, tmp_path / "hard.pt")
    got = stats_from_file(tmp_path / "hard.pt")  # default chunks: 700K spans three of them
    for key, t in tensors.items():
        assert_matches(got[key], t, rtol=1e-5)


def test_constant_empty_zero_d_and_all_nan(tmp_path: Path) -> None:
    tensors = {
        "constant": torch.full((1000, 3), 0.1),
        "empty": torch.empty(0, 4),
        "scalar": torch.tensor(-2.5),
        "one": torch.tensor([7.0]),
        "all_nan": torch.full((10,), NAN),
        "all_inf": torch.tensor([INF, -INF]),
        "int_scalar": torch.tensor(42),
    }
    torch.save(tensors, tmp_path / "edge.pt")
    got = stats_from_file(tmp_path / "edge.pt")
    c = got["constant"]
    assert c.min == c.max == pytest.approx(0.1) and c.std == 0.0 and c.zeros == 0
    assert c.mean == pytest.approx(float(torch.tensor(0.1)), rel=1e-12)
    e = got["empty"]
    assert (e.numel, e.min, e.max, e.mean, e.std, e.absmax, e.l2) == (
        0,
        None,
        None,
        None,
        None,
        None,
        0.0,
    )
    assert e.sparsity is None and e.zeros == e.nan == 0
    s = got["scalar"]
    assert (s.numel, s.min, s.max, s.mean, s.std, s.l2, s.absmax) == (
        1,
        -2.5,
        -2.5,
        -2.5,
        None,
        2.5,
        2.5,
    )
    assert got["one"].std is None and got["one"].mean == 7.0
    n = got["all_nan"]
    assert n.nan == 10 and (n.min, n.mean, n.std, n.l2) == (None, None, None, None)
    i = got["all_inf"]
    assert (i.posinf, i.neginf, i.min, i.l2) == (1, 1, None, None)
    assert got["int_scalar"].min == 42 and isinstance(got["int_scalar"].max, int)


def test_layouts_non_contiguous_and_larger_than_a_chunk(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    big = torch.randn(600, 1100, generator=g)  # 660K elements: more than one default chunk
    tensors = {
        "big": big,
        "transposed": big.t(),  # a permuted dense layout: read as views in storage order
        "strided": big[:, ::3],  # gaps: read in chunk-sized copies
        "column": big[:, 5],
    }
    torch.save(tensors, tmp_path / "layouts.pt")
    got = stats_from_file(tmp_path / "layouts.pt")
    for key, t in tensors.items():
        assert_matches(got[key], t)
    small = stats_from_file(tmp_path / "layouts.pt", chunk_elems=999)
    for key, t in tensors.items():
        assert_matches(small[key], t)


@pytest.mark.filterwarnings("ignore:.*quantize.*:UserWarning")
def test_quantized_tensors_are_dequantized() -> None:
    q = torch.quantize_per_tensor(torch.linspace(-2, 3, 5000), 0.05, 10, torch.qint8)
    s = tensor_stats(q, chunk_elems=512)
    assert s.dequantized and s.dtype == "qint8"
    assert_matches(s, q.dequantize())
    per_channel = torch.quantize_per_channel(
        torch.randn(40, 30),
        torch.rand(40) + 0.01,
        torch.zeros(40, dtype=torch.long),
        0,
        torch.qint8,
    )
    assert_matches(tensor_stats(per_channel, chunk_elems=100), per_channel.dequantize())


def test_progress_and_results_arrive_tensor_by_tensor(tmp_path: Path) -> None:
    tensors = {f"layer{i}.weight": torch.randn(100_000) for i in range(3)}
    torch.save(tensors, tmp_path / "m.pt")

    def slow_reader() -> bool:
        time.sleep(0.01)  # 10 chunks a tensor: each takes 50 ms or more, long enough to report
        return False

    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        events = list(
            iter_stats(ckpt.tensors(), chunk_elems=10_000, cancel=slow_reader, progress_interval=0)
        )
    total = 3 * 400_000
    assert events[0] == Progress(0, total)
    results = [e for e in events if isinstance(e, StatsResult)]
    assert [r.key for r in results] == list(tensors)
    progress = [e.done_bytes for e in events if isinstance(e, Progress)]
    assert progress == sorted(progress) and progress[-1] == total
    for i, result in enumerate(results):  # each result is followed by the bytes done so far
        after = events[events.index(result) + 1]
        assert after == Progress((i + 1) * 400_000, total, result.key)
    # Progress inside the first tensor comes before its result: a bar moves during long tensors.
    first = events[: events.index(results[0])]
    assert any(isinstance(e, Progress) and 0 < e.done_bytes < 400_000 for e in first)


def test_cancel_callable_stops_mid_sweep_between_chunks(tmp_path: Path) -> None:
    tensors = {f"t{i}": torch.randn(50_000) for i in range(4)}
    torch.save(tensors, tmp_path / "m.pt")
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 12  # 5 chunks per tensor: stop inside the third tensor

    keys = []
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        with pytest.raises(Cancelled):
            for event in iter_stats(ckpt.tensors(), chunk_elems=10_000, cancel=cancel):
                if isinstance(event, StatsResult):
                    keys.append(event.key)
    assert keys == ["t0", "t1"] and len(calls) == 13
    with pytest.raises(Cancelled):
        tensor_stats(tensors["t0"], chunk_elems=10_000, cancel=lambda: True)


def test_closing_the_generator_cancels(tmp_path: Path) -> None:
    torch.save({f"t{i}": torch.randn(500_000) for i in range(4)}, tmp_path / "m.pt")
    chunks_started = []

    def count() -> bool:
        chunks_started.append(1)
        return False

    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        gen = iter_stats(ckpt.tensors(), chunk_elems=1000, cancel=count, progress_interval=0)
        seen = []
        for event in gen:
            seen.append(event)
            if isinstance(event, Progress) and event.key == "t1":
                break
        gen.close()
        stopped_at = len(chunks_started)
        time.sleep(0.1)
        assert len(chunks_started) == stopped_at < 4 * 500  # the workers stopped with the close
        assert [e.key for e in seen if isinstance(e, StatsResult)] == ["t0"]
        assert list(gen) == []  # nothing more after close


def test_an_unreadable_tensor_is_reported_and_the_sweep_goes_on() -> None:
    def unreadable() -> torch.Tensor:
        raise CorruptError("m.pt: the data of 'a' is truncated")

    def readable() -> torch.Tensor:
        return torch.arange(4.0)

    nodes = [
        Node(
            "a", "a", "tensor", tensor=TensorInfo("float32", (4,), (1,), "cpu", loader=unreadable)
        ),
        Node("b", "b", "tensor", tensor=TensorInfo("float32", (4,), (1,), "cpu", loader=readable)),
    ]
    events = list(iter_stats(nodes))
    assert StatsFailed("a", "m.pt: the data of 'a' is truncated") in events
    (result,) = [e for e in events if isinstance(e, StatsResult)]
    assert result.key == "b" and result.stats.mean == 1.5 and result.stats.max == 3.0


def test_to_json_is_the_cli_shape_and_strict_json() -> None:
    s = tensor_stats(torch.tensor([1.0, NAN, 0.0, -INF, 3.0]))
    out = to_json(s, "w")
    assert list(out)[:14] == [
        "key", "dtype", "numel", "min", "max", "mean", "std", "l2", "absmax",
        "zeros", "nan", "posinf", "neginf", "sparsity",
    ]  # fmt: skip
    assert out["key"] == "w" and out["numel"] == 5 and out["nan"] == 1 and out["neginf"] == 1
    assert out["min"] == 0.0 and out["max"] == 3.0 and out["mean"] == pytest.approx(4 / 3)
    assert out["zeros"] == 1 and out["sparsity"] == 0.2
    json.dumps(out, allow_nan=False)
    empty = to_json(tensor_stats(torch.empty(0)))
    assert empty["mean"] is None and empty["std"] is None and "key" not in empty


def rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_stays_bounded_for_a_large_bfloat16_tensor(tmp_path: Path) -> None:
    big = torch.full((32 << 20,), 1.5, dtype=torch.bfloat16)  # 64 MB
    big[::1000] = 0.0
    save_file({"big": big}, tmp_path / "big.safetensors")
    del big
    with open_checkpoint(tmp_path / "big.safetensors") as ckpt:
        (node,) = ckpt.tensors()
        t = node.load()
        chunks = list(flat_chunks(t, 1 << 20))[:3]  # views of the file mapping, not copies
        assert all(c.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for c in chunks)
        del chunks
        before, peak, running = rss_anon_kb(), [0], threading.Event()

        def poll() -> None:
            while not running.is_set():
                peak[0] = max(peak[0], rss_anon_kb())
                time.sleep(0.001)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            results = [e for e in iter_stats([node]) if isinstance(e, StatsResult)]
        finally:
            running.set()
            poller.join()
    # A float32 copy would take 128 MB; the sweep holds a few 1 MB buffers per worker.
    assert (peak[0] - before) / 1024 < 40
    s = results[0].stats
    assert (s.zeros, s.min, s.max, s.numel) == (len(range(0, 32 << 20, 1000)), 0.0, 1.5, 32 << 20)
