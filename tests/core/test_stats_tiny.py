"""Tiny tensors are measured many at once (``stats_tiny``, ``segments``): every figure must
be the one the chunked path (``tensor_stats``) gives for the same tensor, for every dtype, with
NaN, infinities, integer extremes, bools, complex values, empty tensors and odd layouts; and the
stream of events must keep its order, failures and progress."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.chunks import TINY_ELEMS
from ckpt_gui.core.errors import Cancelled, CorruptError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.segments import segment_figures
from ckpt_gui.core.stats import (
    Progress,
    StatsFailed,
    StatsResult,
    TensorStats,
    iter_stats,
    tensor_stats,
)
from ckpt_gui.core.tree import Node, TensorInfo, dtype_name

NAN, INF = float("nan"), float("inf")
EXACT = ("numel", "min", "max", "absmax", "zeros", "nan", "posinf", "neginf", "dtype")
EXACT += ("complex_magnitude", "dequantized")


def assert_same(batched: TensorStats, alone: TensorStats, key: str) -> None:
    """Counts, extremes and flags exactly; mean, std and l2 to the chunked path's accuracy
    (its float32 squares are good to ~1e-7; the batch works in float64)."""
    for name in EXACT:
        assert getattr(batched, name) == getattr(alone, name), (key, name, batched, alone)
    for name in ("min", "max", "absmax"):
        assert type(getattr(batched, name)) is type(getattr(alone, name)), (key, name)
    for name in ("mean", "std", "l2"):
        a, b = getattr(batched, name), getattr(alone, name)
        if b is None or a is None:
            assert a is None and b is None, (key, name, a, b)
        elif math.isinf(b) or math.isnan(b):
            assert a == b or (math.isnan(a) and math.isnan(b)), (key, name, a, b)
        else:
            assert a == pytest.approx(b, rel=1e-6, abs=1e-300), (key, name, a, b)


def tensor_node(key: str, t: torch.Tensor) -> Node:
    info = TensorInfo(
        dtype=dtype_name(t.dtype),
        shape=tuple(t.shape),
        stride=tuple(t.stride()),
        device="cpu",
        loader=lambda: t,
    )
    return Node(name=key, key=key, kind="tensor", tensor=info)


def sweep(nodes: list[Node]) -> dict[str, TensorStats | str]:
    out: dict[str, TensorStats | str] = {}
    for event in iter_stats(nodes):
        if isinstance(event, StatsResult):
            out[event.key] = event.stats
        elif isinstance(event, StatsFailed):
            out[event.key] = event.message
    return out


def tiny_tensors() -> dict[str, torch.Tensor]:
    """A few tensors of every dtype the batch takes, with the values that trip statistics up."""
    g = torch.Generator().manual_seed(0)
    floats = torch.tensor([1.5, -2.0, 0.0, -0.0, NAN, INF, -INF, 3e38, 1e-40, 7.0])
    out: dict[str, torch.Tensor] = {}
    for dtype in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
    ):
        name = dtype_name(dtype)
        out[f"{name}.special"] = floats.to(dtype)
        out[f"{name}.randn"] = (torch.randn(37, generator=g) * 1e3).to(dtype)
        out[f"{name}.offset"] = (1e4 + torch.randn(64, generator=g)).to(dtype)  # mean >> spread
        out[f"{name}.all_nan"] = torch.full((3,), NAN).to(dtype)
        out[f"{name}.one"] = torch.tensor([-0.25]).to(dtype)
        out[f"{name}.constant"] = torch.full((5,), 0.1).to(dtype)
        out[f"{name}.empty"] = torch.empty(0, 3, dtype=dtype)
        out[f"{name}.scalar"] = torch.tensor(2.5).to(dtype)
    out["float32.subnormal_spread"] = torch.tensor([1e-22, 3e-22, 2e-22, 5e-23])
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        info = torch.iinfo(dtype)
        name = dtype_name(dtype)
        out[f"{name}.extremes"] = torch.tensor(
            [info.min, info.max, 0, 1, info.max - 1], dtype=dtype
        )
        out[f"{name}.random"] = torch.randint(info.min, info.max, (50,), generator=g, dtype=dtype)
        out[f"{name}.empty"] = torch.empty(0, dtype=dtype)
    out["int64.past_2**53"] = torch.tensor([2**53 + 1, 2**62 + 3, -(2**60) - 7], dtype=torch.int64)
    for dtype in (torch.uint16, torch.uint32, torch.uint64):
        out[f"{dtype_name(dtype)}.values"] = torch.tensor([0, 7, 60000, 3], dtype=dtype)
    out["uint64.big"] = torch.tensor([2**63 + 2**40, 5, 2**64 - 1], dtype=torch.uint64)
    out["bool.mixed"] = torch.tensor([True, False, True, True])
    out["bool.all_false"] = torch.zeros(6, dtype=torch.bool)
    complex_values = torch.tensor([3 + 4j, 0j, complex(NAN, 1.0), complex(INF, 0.0), -1j])
    out["complex64.values"] = complex_values.to(torch.complex64)
    out["complex128.values"] = complex_values.to(torch.complex128)
    out["complex32.values"] = torch.tensor([3 + 4j, 1 - 1j], dtype=torch.complex64).to(
        torch.complex32
    )
    # Layouts: a transposed view, a strided slice, a broadcast view, a view into a big storage.
    base = torch.randn(8, 9, generator=g)
    out["layout.transposed"] = base.t()
    out["layout.every_other"] = base[:, ::2]
    out["layout.broadcast"] = torch.tensor([1.0, NAN, -3.0]).expand(4, 3)
    out["layout.offset_view"] = torch.randn(100_000, generator=g)[99_000:99_010]
    out["layout.at_the_limit"] = torch.randn(TINY_ELEMS, generator=g)
    out["layout.past_the_limit"] = torch.randn(TINY_ELEMS + 1, generator=g)  # chunked path
    return out


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_every_dtype_equals_the_chunked_path() -> None:
    tensors = tiny_tensors()
    results = sweep([tensor_node(k, t) for k, t in tensors.items()])
    assert list(results) == list(tensors)  # one result per tensor, in order
    for key, t in tensors.items():
        got = results[key]
        assert isinstance(got, TensorStats), (key, got)
        assert_same(got, tensor_stats(t), key)


@pytest.mark.parametrize(
    "values, unit",
    [([1e300, -1e300, 5e299], 1e300), ([1e-300, 3e-300, 2e-310], 1e-300)],
    ids=["near-max", "near-min"],
)
def test_float64_values_at_the_ends_of_the_range(values: list[float], unit: float) -> None:
    """Their squared deviations overflow or underflow float64 (the chunked path raises
    OverflowError for the first and gives std 0 for the second); the batch takes std and the
    L2 norm from values scaled by a power of two, so both come out right."""
    t = torch.tensor(values, dtype=torch.float64)
    got = sweep([tensor_node("t", t)])["t"]
    assert isinstance(got, TensorStats)
    scaled = t.numpy() / unit
    assert got.mean == pytest.approx(scaled.mean() * unit, rel=1e-12)
    assert got.std == pytest.approx(scaled.std(ddof=1) * unit, rel=1e-12)
    assert got.l2 == pytest.approx(math.sqrt(float(np.sum(scaled * scaled))) * unit, rel=1e-12)
    assert (got.min, got.max) == (min(values), max(values))


def test_figures_that_matter_by_hand() -> None:
    tensors = {
        "a": torch.tensor([1.0, 2.0, NAN, INF]),
        "b": torch.tensor([], dtype=torch.float32),
        "c": torch.tensor([NAN]),
        "d": torch.tensor([2**62 + 1, -5], dtype=torch.int64),
        "e": torch.tensor([3 + 4j], dtype=torch.complex64),
    }
    got = sweep([tensor_node(k, t) for k, t in tensors.items()])
    a, b, c, d, e = (got[k] for k in "abcde")
    assert isinstance(a, TensorStats) and (a.min, a.max, a.mean, a.nan, a.posinf) == (
        1.0,
        2.0,
        1.5,
        1,
        1,
    )
    assert a.std == pytest.approx(math.sqrt(0.5)) and a.l2 == pytest.approx(math.sqrt(5))
    assert isinstance(b, TensorStats) and (b.numel, b.min, b.l2, b.std) == (0, None, 0.0, None)
    assert isinstance(c, TensorStats) and (c.nan, c.min, c.l2) == (1, None, None)
    assert isinstance(d, TensorStats) and (d.min, d.max) == (-5, 2**62 + 1)  # exact ints
    assert type(d.max) is int
    assert isinstance(e, TensorStats) and (e.min, e.complex_magnitude) == (5.0, True)


def test_a_mix_of_dtypes_and_sizes_keeps_its_order(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    for i in range(300):
        kind = i % 4
        if kind == 0:
            state[f"t{i}"] = torch.randn(i % 7 + 1, generator=g)
        elif kind == 1:
            state[f"t{i}"] = torch.randint(-50, 50, (3,), generator=g, dtype=torch.int32)
        elif kind == 2:
            state[f"t{i}"] = torch.randn(2, 2, generator=g).half()
        else:
            state[f"t{i}"] = torch.randn(2000, generator=g)  # chunked, between the batches
    path = tmp_path / "mix.pt"
    torch.save(state, path)
    with open_checkpoint(path) as ckpt:
        events = list(iter_stats(ckpt.tensors()))
        keys = [e.key for e in events if isinstance(e, StatsResult)]
        assert keys == list(state)
        for e in events:
            if isinstance(e, StatsResult):
                assert_same(e.stats, tensor_stats(state[e.key]), e.key)
    progress = [e for e in events if isinstance(e, Progress)]
    total = sum(t.numel() * t.element_size() for t in state.values())
    assert progress[0] == Progress(0, total)
    assert progress[-1].done_bytes == total
    assert [p.done_bytes for p in progress] == sorted(p.done_bytes for p in progress)


def test_safetensors_tiny_tensors_read_straight_from_the_file(tmp_path: Path) -> None:
    """Tensors back to back in a safetensors file are read in one view of its bytes."""
    g = torch.Generator().manual_seed(2)
    state = {f"w.{i}": torch.randn(i % 5 + 1, generator=g) for i in range(500)}
    state.update(
        {f"m.{i}": torch.randint(0, 255, (3,), generator=g, dtype=torch.uint8) for i in range(50)}
    )
    state.update({"x.empty": torch.empty(0), "x.bf16": torch.randn(4, generator=g).bfloat16()})
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))
    with open_checkpoint(path) as ckpt:
        assert all(n.tensor is not None and n.tensor.bytes_at for n in ckpt.tensors())
        got = sweep(ckpt.tensors())
    assert set(got) == set(state)
    for key, t in state.items():
        stats = got[key]
        assert isinstance(stats, TensorStats)
        assert_same(stats, tensor_stats(t), key)


def _raw_safetensors(path: Path, entries: list[tuple[str, str, list[int], bytes]]) -> None:
    """A safetensors file with the given (name, code, shape, data) in order, unpadded, so a
    float32 tensor may start at an odd offset."""
    header, offset, data = {}, 0, b""
    for name, code, shape, raw in entries:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_misaligned_tensors_fall_back_to_their_loader(tmp_path: Path) -> None:
    values = torch.tensor([1.0, -2.5, NAN, 4.0])
    path = tmp_path / "odd.safetensors"
    _raw_safetensors(
        path,
        [
            ("a.byte", "U8", [3], bytes([1, 2, 3])),
            ("a.float", "F32", [4], values.numpy().tobytes()),  # starts at offset 3
            ("a.byte2", "U8", [1], bytes([9])),
        ],
    )
    with open_checkpoint(path) as ckpt:
        got = sweep(ckpt.tensors())
    floats = got["a.float"]
    assert isinstance(floats, TensorStats)
    assert_same(floats, tensor_stats(values), "a.float")
    assert isinstance(got["a.byte"], TensorStats) and got["a.byte"].max == 3
    assert isinstance(got["a.byte2"], TensorStats) and got["a.byte2"].min == 9


def test_failures_and_raw_bits_keep_their_place() -> None:
    def broken() -> torch.Tensor:
        raise CorruptError("damaged record")

    nodes = [tensor_node("a", torch.ones(2))]
    bad = TensorInfo(dtype="float32", shape=(2,), stride=(1,), device="cpu", loader=broken)
    nodes.append(Node(name="bad", key="bad", kind="tensor", tensor=bad))
    nodes.append(tensor_node("bits", torch.zeros(4, dtype=torch.uint8).view(torch.bits8)))
    nodes.append(tensor_node("b", torch.zeros(3)))
    events = [e for e in iter_stats(nodes) if not isinstance(e, Progress)]
    assert [(type(e).__name__, e.key) for e in events] == [
        ("StatsResult", "a"),
        ("StatsFailed", "bad"),
        ("StatsFailed", "bits"),
        ("StatsResult", "b"),
    ]
    assert isinstance(events[1], StatsFailed) and "damaged record" in events[1].message


def test_a_tensor_bigger_than_described_is_measured_on_its_own() -> None:
    """A description can say [1] and the loader give 5,000 values (a lying file): the batch
    does not take it; the chunked path measures what was loaded."""
    big = torch.arange(5000, dtype=torch.float32)
    info = TensorInfo(dtype="float32", shape=(1,), stride=(1,), device="cpu", loader=lambda: big)
    nodes = [
        tensor_node("a", torch.ones(1)),
        Node(name="lie", key="lie", kind="tensor", tensor=info),
    ]
    got = sweep(nodes)
    assert_same(got["lie"], tensor_stats(big), "lie")  # type: ignore[arg-type]


def test_cancel_stops_between_batches() -> None:
    nodes = [tensor_node(f"t{i}", torch.ones(1)) for i in range(20_000)]
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        for _ in iter_stats(nodes, cancel=cancel):
            pass


def test_segment_figures_with_empty_and_non_finite_segments() -> None:
    values = np.array([1.0, 3.0, np.nan, np.inf, -np.inf, 0.0, -0.0, 5.0], dtype=np.float64)
    lengths = np.array([0, 2, 0, 3, 3, 0])
    f = segment_figures(values, lengths)
    assert f.n == [0, 2, 0, 0, 3, 0]
    assert f.mean == [0.0, 2.0, 0.0, 0.0, pytest.approx(5 / 3), 0.0]
    assert f.m2[1] == 2.0 and f.m2[3] == 0.0
    assert f.std[1] == pytest.approx(math.sqrt(2.0)) and f.std[0] == 0.0
    assert f.l2[1] == pytest.approx(math.sqrt(10.0)) and f.l2[4] == 5.0
    assert f.lo[1:2] == [1.0] and f.hi[4] == 5.0 and f.lo[0] == math.inf
    assert f.zeros == [0, 0, 0, 0, 2, 0]
    assert (f.nan, f.posinf, f.neginf) == (
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0] * 3 + [1, 0, 0],
    )
    with pytest.raises(ValueError):
        segment_figures(values, np.array([3, 3]))
