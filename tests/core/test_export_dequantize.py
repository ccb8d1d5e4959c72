"""``export --dequantize``: every quantized weight written as its logical tensor, read back
with plain torch and safetensors, equal to the reference dequantization (each scheme's own,
from ``tests/core/quant``) cast as planned; streamed, never whole; refusals in one line."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from ckpt_gui.core.export import dequantize_verify, run
from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import dtype_from_name
from tests.core.quant import gguf_writer as G
from tests.core.quant import writers as W

FIXTURES = {
    "gptq": lambda p: W.gptq(p, act_order=True),
    "awq": W.awq,
    "compressed": lambda p: W.compressed(p, asym=True),
    "fp8": lambda p: W.fp8(p, block=False),
    "fp8-block": lambda p: W.fp8(p, block=True),
    "mxfp4": W.mxfp4,
    "nf4": lambda p: W.bnb4(p, nested=True),
    "int8": W.bnb8,
}


def _export(src: Path, dst: Path, *extra: str) -> None:
    assert main(["export", str(src), str(dst), "--dequantize", *extra]) == 0


def _expected(ref: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).to(dtype)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_each_scheme_exports_its_reference_dequantization(tmp_path: Path, name: str) -> None:
    path, refs = FIXTURES[name](tmp_path / "q")
    _export(path, tmp_path / "out.safetensors")
    out = load_file(str(tmp_path / "out.safetensors"))
    with open_checkpoint(path) as ckpt:
        dtypes = {lt.key: dtype_from_name(lt.dtype) for lt in ckpt.logical}
    for key, ref in refs.items():
        # The weight's own dtype (the config's torch_dtype, the quant state's, or float32).
        dtype = out[key].dtype
        assert dtype == dtypes[key]
        assert out[key].shape == ref.shape
        assert torch.equal(out[key], _expected(ref, dtype))
    # No raw part is left; the plain tensors are there as they were.
    raw = load_file(str(path))
    kept = set(out) - set(refs)
    assert kept <= set(raw) and not any(k.endswith(("qweight", "_scale", "_blocks")) for k in out)


def test_float32_pt_and_shards_load_with_plain_torch(tmp_path: Path) -> None:
    path, refs = W.gptq(tmp_path / "q")
    [(key, ref)] = refs.items()
    _export(path, tmp_path / "out.pt", "--dtype", "float32")
    obj = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(obj[key], _expected(ref, torch.float32))
    assert torch.equal(obj["model.norm.weight"], torch.ones(48))
    _export(path, tmp_path / "shards", "--shard-size", "10KB", "--format", "pt")
    index = json.loads((tmp_path / "shards" / "pytorch_model.bin.index.json").read_text())
    shard = torch.load(tmp_path / "shards" / index["weight_map"][key], weights_only=True)
    assert torch.equal(shard[key], _expected(ref, torch.bfloat16))


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_gguf_exports_what_gguf_dequantizes(tmp_path: Path, qtype: str) -> None:
    kind = gguf.GGMLQuantizationType[qtype]
    path, hf, raw = G.llama(tmp_path / "g", kind)
    _export(path, tmp_path / "out.safetensors")
    out = load_file(str(tmp_path / "out.safetensors"))
    assert set(out) == set(raw)  # the metadata's values are not tensors: left out
    for name, data in raw.items():
        if data.dtype == np.float32:  # a plain tensor, copied
            assert torch.equal(out[name], torch.from_numpy(data))
            continue
        ref = gguf.quants.dequantize(data, kind)
        assert out[name].dtype == torch.float32
        assert torch.equal(out[name], torch.from_numpy(ref))


def test_weights_stream_in_row_blocks_never_whole(tmp_path: Path, monkeypatch) -> None:
    path, refs = W.fp8(tmp_path / "q", block=True)  # 300 x 260
    [(key, ref)] = refs.items()
    # Blocks of a few rows (and the check's of another size), and no whole weight, ever.
    monkeypatch.setattr(run, "CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(dequantize_verify, "CHECK_ELEMENTS", 700)

    def whole(self: LogicalTensor) -> torch.Tensor:
        raise AssertionError(f"{self.key} read whole")

    monkeypatch.setattr(LogicalTensor, "dequantize", whole)
    for out in ("out.safetensors", "out.pt"):
        _export(path, tmp_path / out, "--dtype", "float16")
    assert torch.equal(
        load_file(str(tmp_path / "out.safetensors"))[key], _expected(ref, torch.float16)
    )
    pt = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(pt[key], _expected(ref, torch.float16))


def test_a_plain_checkpoint_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    save_file({"w": torch.ones(3)}, str(tmp_path / "p.safetensors"))
    argv = ["export", str(tmp_path / "p.safetensors"), str(tmp_path / "o.pt"), "--dequantize"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no quantized weights to dequantize" in err
    assert not (tmp_path / "o.pt").exists()


def _overflowing(folder: Path) -> tuple[Path, str]:
    """An fp8 weight whose scale puts its largest values beyond float16's range."""
    folder.mkdir()
    key = "layer.weight"
    w = torch.tensor([[448.0, -448.0, 1.0, 0.5]] * 4).to(torch.float8_e4m3fn)
    save_file({key: w, key + "_scale": torch.tensor(1000.0)}, str(folder / "model.safetensors"))
    quant = {"quant_method": "compressed-tensors", "format": "float-quantized"}
    (folder / "config.json").write_text(json.dumps({"quantization_config": quant}))
    return folder / "model.safetensors", key


def test_overflow_of_the_cast_is_refused_or_applied_as_chosen(tmp_path: Path, capsys) -> None:
    path, key = _overflowing(tmp_path / "q")
    dst = tmp_path / "o.safetensors"
    argv = ["export", str(path), str(dst), "--dequantize", "--dtype", "float16"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "8 finite values would become ±inf in float16" in err and err.count("\n") == 1
    assert not dst.exists() and not list(tmp_path.glob("*.tmp*"))
    assert main([*argv, "--on-overflow", "clamp"]) == 0
    assert "8 finite values become ±inf" in capsys.readouterr().out
    got = load_file(str(dst))[key]
    assert got.dtype == torch.float16 and float(got.abs().max()) == torch.finfo(torch.float16).max
    assert float(got[0, 2]) == 1000.0


def test_dequantize_with_merge_into_is_refused(tmp_path: Path, capsys) -> None:
    path, _ = W.gptq(tmp_path / "q")
    argv = ["export", str(path), str(tmp_path / "o.pt"), "--dequantize", "--merge-into", "x"]
    assert main(argv) == 2
    assert "cannot be combined" in capsys.readouterr().err
