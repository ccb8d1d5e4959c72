"""The structural view: files torch refuses open with their tensors, and nothing in them runs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import random
import struct
import sys
import threading
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckpt_gui.core.errors import (
    Cancelled,
    CheckpointError,
    CorruptError,
    NotACheckpointError,
    UnsupportedFormatError,
)
from ckpt_gui.core.safety.structural import (
    StandIn,
    StandInObject,
    check_nesting,
    module_state_dict,
    module_tree,
    structural_load,
    structural_loads,
)
from tests.core.hostile import (
    Call,
    Entry,
    Storage,
    archive_pickle,
    bomb_stream,
    save_with_module_name,
    tensor_call,
    write_archive,
    write_corpus,
    write_zip,
)


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = torch.nn.Linear(4, 3)
        self.norm = torch.nn.BatchNorm1d(3)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = torch.nn.Linear(3, 2, bias=False)
        self.scale = torch.nn.Parameter(torch.tensor([1.5]))
        self.register_buffer("steps", torch.tensor(7))


@dataclasses.dataclass
class Config:
    lr: float
    layers: list[int]


def tensors_in(obj: Any) -> dict[str, torch.Tensor]:
    """Every tensor under plain containers, by dotted key (the lead's reader walks the same)."""
    out, stack = {}, [("", obj)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, torch.Tensor):
            out[key] = node
        elif isinstance(node, dict):
            stack.extend((f"{key}.{k}".lstrip("."), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{key}.{i}".lstrip("."), v) for i, v in enumerate(node))
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    return {
        "f32": base,
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "f64": base.double(),
        "i8": (base * 9).to(torch.int8),
        "u8": (base.abs() * 9).to(torch.uint8),
        "i64": torch.arange(5),
        "bool": base > 0,
        "c64": torch.complex(base, -base),
        "u16": torch.arange(6).to(torch.uint16),
        "f8": base.to(torch.float8_e4m3fn),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
        "transposed": base.t(),
        "view": base[1:, 2:],
        "expanded": torch.tensor([3.0]).expand(5),
    }


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride():
        return False
    if a.dtype.is_floating_point and a.dtype.itemsize == 1:  # float8 has no == kernel
        return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    return torch.equal(a, b)


# -- real checkpoints ----------------------------------------------------------------------------


def test_state_dict_of_every_dtype_round_trips(tmp_path):
    path = tmp_path / "sd.pt"
    original = mixed_tensors()
    torch.save(original, path)
    before = sha(path)
    with structural_load(path) as result:
        assert result.format == "torch-zip"
        loaded = result.obj
        assert list(loaded) == list(original)
        for key, tensor in original.items():
            assert same(loaded[key], tensor), key
            assert result.location(loaded[key]) == "cpu"
        shared = {result.storage_of(loaded[k]) for k in ("f32", "transposed", "view")}
        assert len(shared) == 1  # one storage, as saved
        assert result.storage_of(torch.ones(1)) is None
        loaded["f32"].add_(1)  # a private map: the file never changes
    assert sha(path) == before
    assert torch.equal(structural_load(path).obj["f32"], original["f32"])


def test_whole_model_whose_class_cannot_be_imported(tmp_path):
    torch.manual_seed(0)
    model = Model()
    path = tmp_path / "model.pt"
    save_with_module_name(model, "throwaway_models_xyz", path)
    assert "throwaway_models_xyz" not in sys.modules
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)

    result = structural_load(path)
    assert isinstance(result.obj, StandInObject)
    assert result.obj.qualname == "throwaway_models_xyz.Model"
    state = module_state_dict(result.obj)
    expected = model.state_dict()
    assert list(state) == list(expected)  # same keys, same order; no non-persistent buffer
    for key, value in expected.items():
        assert same(state[key], value), key
    assert isinstance(state["scale"], torch.nn.Parameter)
    tree = module_tree(result.obj)
    assert tree is not None and tree.type_name == "throwaway_models_xyz.Model"
    assert [(c.name, c.type_name) for c in tree.children] == [
        ("block", "throwaway_models_xyz.Block"),
        ("head", "torch.nn.modules.linear.Linear"),
    ]
    assert [c.name for c in tree.children[0].children] == ["linear1", "norm"]
    assert ("throwaway_models_xyz", "Model") in result.globals
    assert "throwaway_models_xyz" not in sys.modules


def test_training_checkpoint_with_a_dataclass_and_numpy_scalars(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "config": Config(lr=0.1, layers=[3, 1]),
        "best": np.float32(0.25),
        "step": np.int64(9),
    }
    path = tmp_path / "train.pt"
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    result = structural_load(path)
    expected, loaded = tensors_in(checkpoint), tensors_in(result.obj)
    assert set(loaded) == set(expected) and len(loaded) == 4 + 4 * 3  # Adam: 3 per parameter
    for key, value in expected.items():
        assert same(loaded[key], value), key
    config = result.obj["config"]
    assert config.qualname == f"{Config.__module__}.Config"
    assert config.state == {"lr": 0.1, "layers": [3, 1]}
    best = result.obj["best"]  # NumPy scalars are rebuilt as what they are, never run
    assert type(best) is np.float32 and best == np.float32(0.25)
    assert result.obj["epoch"] == 3


def test_legacy_format(tmp_path):
    torch.manual_seed(0)
    original = {"model": Model().state_dict(), **mixed_tensors(), "note": "legacy"}
    del original["u16"], original["f8"]  # no legacy storage type for these
    path = tmp_path / "legacy.pt"
    torch.save(original, path, _use_new_zipfile_serialization=False)
    result = structural_load(path)
    assert result.format == "torch-legacy"
    expected, loaded = tensors_in(original), tensors_in(result.obj)
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert same(loaded[key], value), key
    assert result.obj["note"] == "legacy"


def test_legacy_whole_model(tmp_path):
    torch.manual_seed(0)
    model = Model()
    path = tmp_path / "legacy_model.pt"
    save_with_module_name(model, "throwaway_legacy_xyz", path, _use_new_zipfile_serialization=False)
    result = structural_load(path)
    assert result.format == "torch-legacy"
    assert result.obj.qualname == "throwaway_legacy_xyz.Model"
    state = module_state_dict(result.obj)
    assert list(state) == list(model.state_dict())
    assert all(same(state[k], v) for k, v in model.state_dict().items())


def test_plain_pickle_of_tensors(tmp_path):
    """``pickle.dump`` (not torch.save) writes each storage as a small torch file inside the
    pickle, for ``torch.storage._load_from_bytes``: those are read the same inert way."""
    original = {"w": torch.randn(3, 4), "t": torch.randn(4, 3).t(), "i": torch.arange(5)}
    original["p"] = torch.nn.Parameter(torch.ones(2))
    original["alias"] = original["w"][1]
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(original))
    result = structural_load(path)
    assert result.format == "pickle"
    for key, value in original.items():
        assert same(result.obj[key], value.detach()), key
    assert result.location(result.obj["alias"]) == "cpu"
    assert isinstance(result.obj["p"], torch.nn.Parameter)
    assert ("torch.storage", "_load_from_bytes") in result.globals
    # The same with the storage saved in the zip format, as a newer writer might.
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TypedStorage is deprecated, and exactly what we want
        warnings.simplefilter("ignore")
        torch.save(torch.arange(4.0).storage(), buffer)
    storage = Call(torch.storage._load_from_bytes, buffer.getvalue())
    tensor = Call(torch._utils._rebuild_tensor_v2, storage, 0, (2, 2), (2, 1), False, OrderedDict())
    path.write_bytes(pickle.dumps({"t": tensor}))
    loaded = structural_load(path).obj["t"]
    assert torch.equal(loaded, torch.arange(4.0).reshape(2, 2))


class Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_torchscript_archive_opens_structurally(tmp_path):
    torch.manual_seed(0)
    module = Scripted()
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(module), path)
    result = structural_load(path)
    assert result.format == "torchscript"
    fc = result.obj.state["_modules"]["fc"]  # read as a module: see core/safety/torchscript
    assert same(fc.state["_parameters"]["weight"], module.fc.weight.detach())


def test_saved_device_is_kept(tmp_path):
    path = tmp_path / "gpu.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 4, "cuda:0"), 0, (2, 2), (2, 1))}
    values = torch.arange(4, dtype=torch.float32)
    write_archive(path, archive_pickle(obj), {"0": values.numpy().tobytes()})
    result = structural_load(path)
    assert result.location(result.obj["w"]) == "cuda:0"
    assert torch.equal(result.obj["w"], values.reshape(2, 2))
    # The hand-built archive is one torch itself reads the same way.
    assert torch.equal(
        torch.load(path, map_location="cpu", weights_only=True)["w"], result.obj["w"]
    )


def test_compressed_records_are_inflated_within_limits(tmp_path):
    source = tmp_path / "plain.pt"
    original = {"w": torch.randn(3, 4), "b": torch.arange(3)}
    torch.save(original, source)
    entries = []
    with zipfile.ZipFile(source) as zf:
        for info in zf.infolist():
            raw = zf.read(info)
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            packed = c.compress(raw) + c.flush()
            entries.append(Entry(info.filename, packed, len(raw), zlib.crc32(raw), deflated=True))
    path = tmp_path / "deflated.pt"
    write_zip(path, entries)
    loaded = structural_load(path).obj
    assert all(torch.equal(loaded[k], v) for k, v in original.items())


# -- hostile input ------------------------------------------------------------------------------


def test_hostile_corpus_opens_inert(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    structural_load(corpus[0].path)  # warm up: later loads may import nothing at all
    modules_before = set(sys.modules)
    hashes = {h.name: sha(h.path) for h in corpus}
    for hostile in corpus:
        if hostile.sys_path:
            sys.path.insert(0, hostile.sys_path)
        try:
            result = structural_load(hostile.path)
        finally:
            if hostile.sys_path:
                sys.path.remove(hostile.sys_path)
        stand_ins = [o for o in _walk(result.obj) if isinstance(o, StandInObject)]
        assert stand_ins, hostile.name
        if hostile.name.startswith("nested_torch"):  # we read the inner file, inertly too
            hostile.expect = ("builtins", "exec")
        if hostile.expect:
            called = {
                (o.callee.module, o.callee.name) for o in stand_ins if isinstance(o.callee, StandIn)
            }
            assert hostile.expect in called, (hostile.name, called)
        if isinstance(result.obj, dict) and "weight" in result.obj:
            assert torch.equal(result.obj["weight"], torch.arange(6.0).reshape(2, 3))
    assert set(sys.modules) == modules_before
    assert [h.name for h in corpus if h.sentinel.exists()] == []
    assert {h.name: sha(h.path) for h in corpus} == hashes


def _walk(obj: Any) -> list[Any]:
    seen, out, stack = set(), [], [obj]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, StandInObject):
            stack.extend([node.callee, *node.args, node.state])
    return out


def test_payload_calls_are_recorded_not_made(tmp_path):
    corpus = {h.name: h for h in write_corpus(tmp_path / "c")}
    payload = structural_load(corpus["zip_os_system"].path).obj["payload"]
    assert payload.qualname == f"{__import__('os').system.__module__}.system"
    assert str(corpus["zip_os_system"].sentinel) in payload.args[0]
    nested = structural_load(corpus["nested_pickle_loads"].path).obj["payload"]
    assert nested.qualname == "pickle.loads" and isinstance(nested.args[0], bytes)


def test_shape_larger_than_storage_is_refused(tmp_path):
    path = tmp_path / "lie.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 4), 0, (5,), (1,))}
    write_archive(path, archive_pickle(obj), {"0": bytes(16)})
    with pytest.raises(CorruptError, match="needs 5 elements but its storage '0' holds 4"):
        structural_load(path)


@pytest.mark.parametrize(
    ("numel", "offset", "size", "stride", "message"),
    [
        (100, 0, (2,), (1,), "declares 400 bytes but its record holds 16"),
        (4, 3, (2,), (1,), "needs 5 elements"),
        (4, 0, (2, 2), (2, 2), "needs 5 elements"),
        (4, 0, (2,), (-1,), "negative or huge"),
        (4, -1, (1,), (1,), "negative or huge"),
        (4, 0, (2**70,), (0,), "negative or huge"),
        (4, 0, (2, 2), (1,), "bad shape"),
        (2**80, 0, (1,), (1,), "bad size"),
    ],
)
def test_lying_tensor_records_are_refused(tmp_path, numel, offset, size, stride, message):
    path = tmp_path / "lie.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, numel), offset, size, stride)}
    write_archive(path, archive_pickle(obj), {"0": bytes(16)})
    with pytest.raises(CorruptError, match=message):
        structural_load(path)


def test_stride_zero_trillion_elements_opens_without_allocating(tmp_path):
    path = tmp_path / "broadcast.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 1), 0, (10**12,), (0,))}
    write_archive(path, archive_pickle(obj), {"0": struct.pack("<f", 4.5)})
    w = structural_load(path).obj["w"]
    assert w.shape == (10**12,) and w.stride() == (0,)
    assert w[123_456_789_012].item() == 4.5


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.pt"
    write_zip(path, [Entry("a/data.pkl", bomb_stream(3), 3 << 30, 0, deflated=True)])
    with pytest.raises(CorruptError, match="zip bomb"):
        structural_load(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".", "nested more than 256"),
        (b"\x80\x02}" + b")" + b"\x85" * 100_000 + b"K\x01s.", "nested too deeply"),
        (b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b".", "truncated"),
        (b"\x80\x02]q\x00K\x01a" + b"h\x00h\x00\x86q\x00" * 200 + b".", "expand to more than"),
        (b"\x80\x02cbuiltins\nlen\n]\x85R.", None),
        (b"\x80\x02cbuiltins\nlen\n" + b")R" * 10_000 + b".", "nested more than 256"),
        (b"\x80\x02\x82\x05.", "extension code 5"),
        (b"\x80\x02K\x01)R.", "calls a int"),
        (b"\x80\x02]K\x01K\x02s.", "SETITEMS on a list"),
    ],
)
def test_hostile_pickles_give_a_clear_error(data, message):
    if message is None:  # calling a stand-in records the call, nothing more
        result = structural_loads(data)
        assert result.obj.qualname == "builtins.len" and result.obj.args == ([],)
        return
    with pytest.raises(CorruptError, match=message):
        structural_loads(data)


def test_reference_cycles_do_not_hang():
    data = b"\x80\x02]q\x00h\x00a."  # a list that contains itself
    obj = structural_loads(data).obj
    assert obj[0] is obj
    loop = StandIn("m", "Mod")()
    loop.state = {"_parameters": {}, "_buffers": {}, "_modules": {"self": None}}
    loop.state["_modules"]["self"] = loop
    assert module_state_dict(loop) == OrderedDict()
    assert check_nesting(loop, "x")[0] >= 1


def _fuzz_source() -> bytes:
    inner = {"w": tensor_call(Storage("0", torch.FloatStorage, 6), 0, (2, 3), (3, 1))}
    obj = {"model": inner, "cfg": Config(0.5, [1, 2]), "k": [1, (2, 3), {"a": b"xy"}], "s": {4}}
    return archive_pickle(obj)


FUZZ_SOURCE = _fuzz_source()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_pickles_never_crash(tmp_path_factory, data):
    damaged = bytearray(FUZZ_SOURCE)
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(damaged) - 1))
        damaged[index] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.getbasetemp() / "fuzz.pt"
    write_archive(path, bytes(damaged), {"0": bytes(24)})
    try:
        structural_load(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_at_any_point(tmp_path, legacy):
    path = tmp_path / "full.pt"
    torch.save({"w": torch.ones(3), "n": [1, 2]}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    errors = set()
    for n in range(0, len(data), 1 if legacy else 3):
        cut.write_bytes(data[:n])
        try:
            structural_load(cut)
        except CheckpointError as exc:
            errors.add(type(exc))
    assert CorruptError in errors


def test_flipped_bytes_anywhere_in_the_file(tmp_path):
    path = tmp_path / "model.pt"
    save_with_module_name(Model(), "throwaway_flips", path)
    data = path.read_bytes()
    rng = random.Random(3)
    for _ in range(200):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        try:
            structural_load(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (random.Random(0).randbytes(5000), NotACheckpointError),
        (b"", NotACheckpointError),
        (b"plain text, not a model\n" * 10, NotACheckpointError),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), NotACheckpointError),
        (struct.pack("<Q", 2) + b"{}", UnsupportedFormatError),
    ],
)
def test_files_that_are_not_pickles(tmp_path, content, error):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(error):
        structural_load(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    errors: list[Exception] = []

    def load() -> None:
        try:
            structural_load(fifo)
        except CheckpointError as exc:
            errors.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive() and isinstance(errors[0], NotACheckpointError)


def test_progress_is_called_and_can_cancel(tmp_path):
    path = tmp_path / "long.pkl"
    path.write_bytes(pickle.dumps(list(range(300_000)), protocol=2))
    calls = []

    def progress() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        structural_load(path, progress=progress)
    assert len(calls) == 2
    assert structural_load(path).obj[-1] == 299_999
