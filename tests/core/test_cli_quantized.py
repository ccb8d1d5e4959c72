"""The command line on quantized checkpoints: ``inspect --json`` lists the logical tensors,
``stats --json`` measures them dequantized, ``diff`` pairs them with a full-precision original
and reports the error quantization made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main
from tests.core.quant import writers as W

GPTQ_KEY = "model.layers.0.mlp.down_proj"


def _json(capsys, argv: list[str], status: int = 0) -> dict:
    assert main(argv) == status
    return json.loads(capsys.readouterr().out)


def test_inspect_lists_each_quantized_weight(tmp_path: Path, capsys) -> None:
    path, _ = W.gptq(tmp_path)
    out = _json(capsys, ["inspect", str(path), "--json"])
    [entry] = out["quantized"]
    assert {k: entry[k] for k in ("key", "scheme", "shape", "dtype", "bits", "group_size")} == {
        "key": f"{GPTQ_KEY}.weight",
        "scheme": "gptq",
        "shape": [48, 256],
        "dtype": "bfloat16",
        "bits": 4,
        "group_size": 64,
    }
    assert entry["parts"] == [f"{GPTQ_KEY}.{p}" for p in ("qweight", "qzeros", "scales", "g_idx")]
    assert entry["label"] == "dequantized (gptq, 4-bit, group 64)"
    # The file's own tensors are listed as they are, each part saying what it is part of.
    parts = {t["key"]: t["part_of"] for t in out["tensors"]}
    assert parts[f"{GPTQ_KEY}.qweight"] == f"{GPTQ_KEY}.weight"
    assert parts["model.norm.weight"] is None
    assert out["totals"]["tensors"] == 5


def test_inspect_of_a_plain_file_has_no_quantized_weights(tmp_path: Path, capsys) -> None:
    save_file({"w": torch.ones(3)}, str(tmp_path / "p.safetensors"))
    assert _json(capsys, ["inspect", str(tmp_path / "p.safetensors"), "--json"])["quantized"] == []


def test_stats_gives_the_dequantized_figures_under_the_logical_key(tmp_path: Path, capsys) -> None:
    path, refs = W.fp8(tmp_path, block=False)  # the logical key is the raw weight's key
    out = _json(capsys, ["stats", str(path), "--json"])
    key = next(iter(refs))
    same_key = [t for t in out["tensors"] if t["key"] == key]
    assert [t["dequantized"] for t in same_key] == [True, False]
    logical, raw = same_key
    ref = refs[key].astype(np.float64)
    assert logical["scheme"] == "fp8" and logical["label"].startswith("dequantized (fp8, 8-bit")
    assert logical["numel"] == ref.size and logical["dtype"] == "bfloat16"
    assert logical["absmax"] == np.abs(ref).max()
    assert logical["l2"] == pytest.approx(np.linalg.norm(ref), rel=1e-6)
    assert raw["dtype"] == "float8_e4m3fn" and raw["role"] == "quantization"
    assert raw["absmax"] == pytest.approx(np.abs(ref).max() / np.float32(0.0123), rel=1e-6)


def test_diff_reports_the_error_of_each_quantized_weight(tmp_path: Path, capsys) -> None:
    path, refs = W.gptq(tmp_path / "q")
    ref = refs[f"{GPTQ_KEY}.weight"]
    r = np.random.default_rng(0)
    original = (ref + r.normal(0, 0.001, ref.shape)).astype(np.float32)
    save_file(
        {f"{GPTQ_KEY}.weight": torch.from_numpy(original), "model.norm.weight": torch.ones(48)},
        str(tmp_path / "original.safetensors"),
    )
    out = _json(capsys, ["diff", str(path), str(tmp_path / "original.safetensors"), "--json"], 1)
    # The logical weight is bfloat16 (the config's torch_dtype), the original float32: a
    # dtype mismatch, compared all the same.
    assert out["changed"] == []
    [entry] = out["dtype_mismatch"]
    assert (entry["key"], entry["dtype_a"], entry["dtype_b"]) == (
        f"{GPTQ_KEY}.weight",
        "bfloat16",
        "float32",
    )
    a, b = ref.astype(np.float64), original.astype(np.float64)
    assert entry["max_abs_diff"] == pytest.approx(np.abs(a - b).max(), rel=1e-6)
    assert entry["rel_l2"] == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(a), rel=1e-5)
    cosine = (a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b)
    assert entry["cosine"] == pytest.approx(cosine, rel=1e-6)
    # The raw parts are not compared against nothing: they are the logical tensor.
    assert out["only_a"] == [] and out["identical"] == ["model.norm.weight"]


def test_text_reports_say_what_is_dequantized(tmp_path: Path, capsys) -> None:
    path, _ = W.bnb4(tmp_path)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "quantized weights (1)" in text and "bnb-nf4" in text
    assert main(["stats", str(path)]) == 0
    assert "bfloat16 dequant." in capsys.readouterr().out
