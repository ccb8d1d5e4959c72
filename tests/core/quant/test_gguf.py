"""GGUF files written by the gguf package open natively: tensors, key-values, dequantized
values equal to ``gguf.quants.dequantize`` of the same bytes, and a diff against the Hugging
Face original under its names, with llama.cpp's q/k row permutation undone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint
from tests.core.quant import gguf_writer as G

Q = gguf.GGMLQuantizationType


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0])
def test_gguf_opens_with_logical_tensors_equal_to_gguf_dequantize(tmp_path: Path, qtype) -> None:
    path, hf, raw = G.llama(tmp_path, qtype)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "gguf"
        meta = {n.name: n.value for n in ckpt.find("metadata").children}
        assert meta["general.architecture"] == "llama"
        assert meta["llama.attention.head_count"] == G.N_HEAD
        assert meta["tokenizer.ggml.tokens"].startswith("[40 × string: t0, t1")
        logical = {lt.key: lt for lt in ckpt.logical}
        assert set(logical) == {k for k, v in raw.items() if v.dtype == np.uint8}
        for key, lt in logical.items():
            assert lt.scheme == f"gguf:{qtype.name}" and lt.group_size == 32
            ref = gguf.quants.dequantize(raw[key], qtype)
            assert lt.shape == ref.shape
            assert np.array_equal(lt.dequantize().numpy(), ref)
            assert np.array_equal(lt.rows_at([3, 0, 2]).numpy(), ref[[3, 0, 2]])
        norm = ckpt.find("blk.0.attn_norm.weight")
        assert np.array_equal(norm.load().numpy(), hf["model.layers.0.input_layernorm.weight"])


def test_k_quants_dequantize_chunk_by_chunk(tmp_path: Path) -> None:
    """Q4_K bytes (random codes, sane fp16 scales) written as they are: the gguf package has
    no Q4_K quantizer in Python, only the dequantizer."""
    r = np.random.default_rng(9)
    rows, cols = 12, 512
    blocks = r.integers(0, 256, (rows, cols // 256, 144)).astype(np.uint8)
    blocks[..., 0:4] = np.frombuffer(np.array([0.01, 0.002], np.float16).tobytes(), np.uint8)
    data = blocks.reshape(rows, -1)
    path = tmp_path / "k.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.ffn_up.weight", data, raw_dtype=Q.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ref = gguf.quants.dequantize(data, Q.Q4_K)
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert (lt.scheme, lt.bits, lt.group_size, lt.shape) == ("gguf:Q4_K", 4, 256, ref.shape)
        pieces = [c.numpy() for c in lt.chunks(3 * cols)]
    assert len(pieces) == 4 and np.array_equal(np.concatenate(pieces), ref.reshape(-1))


def test_diff_pairs_a_gguf_with_its_hugging_face_original(tmp_path: Path, capsys) -> None:
    path, hf, raw = G.llama(tmp_path, Q.Q8_0)
    assert main(["diff", str(path), str(tmp_path / "hf.safetensors"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    changed = {e["key"]: e for e in out["changed"]}
    assert set(changed) == {k for k in hf if hf[k].ndim == 2}
    assert out["only_a"] == [] and out["only_b"] == []
    for key, entry in changed.items():
        # Q8_0 keeps 8 bits a value: a small error, and a cosine of 1 only with the rows of
        # q and k put back in Hugging Face's order.
        assert entry["rel_l2"] < 0.01 and entry["cosine"] > 0.9999, key
        ref = hf[key]
        name = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 1).get_name(key, (".weight",))
        deq = gguf.quants.dequantize(raw[name], Q.Q8_0)
        if "q_proj" in key or "k_proj" in key:
            heads = G.N_HEAD if "q_proj" in key else G.N_KV
            deq = G.unpermute(deq, heads)
        expected = np.abs(deq - ref).max()
        assert entry["max_abs_diff"] == pytest.approx(float(expected), rel=1e-6)
    assert "model.layers.0.input_layernorm.weight" in out["identical"]


@pytest.mark.parametrize("keep", [10, 400, 2000, -10])
def test_a_damaged_gguf_is_one_line_and_exit_2(tmp_path: Path, capsys, keep: int) -> None:
    path, _, _ = G.llama(tmp_path, Q.Q8_0)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(path.read_bytes()[:keep])
    assert main(["inspect", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ckpt-gui: error: {damaged}: damaged GGUF file (")
    assert len(err.splitlines()) == 1


def test_a_folder_holding_one_gguf_opens_as_that_file(tmp_path: Path, capsys) -> None:
    path, _, raw = G.llama(tmp_path / "made")
    folder = tmp_path / "llama"
    folder.mkdir()
    path.rename(folder / "llama-q8_0.gguf")
    (folder / "README.md").write_text("a model card")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "gguf" and ckpt.path == folder
        assert {lt.key for lt in ckpt.logical} == {k for k, v in raw.items() if v.ndim == 2}
    assert main(["inspect", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "gguf" and len(out["quantized"]) == 4
    # Two .gguf files (two quantizations of one model): a folder of checkpoints, one each.
    shutil.copy(folder / "llama-q8_0.gguf", folder / "llama-copy.gguf")
    with open_checkpoint(folder) as ckpt:
        assert [c.name for c in ckpt.root.children] == ["llama-copy", "llama-q8_0"]
