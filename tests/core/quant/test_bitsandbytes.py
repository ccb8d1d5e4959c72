"""bitsandbytes' own CPU quantizers write the fixtures (as transformers serialises a
Linear4bit and a Linear8bitLt: the weight, then ``QuantState.as_dict(packed=True)`` under
``weight.``, or ``SCB``), and its own dequantizers give the reference, matched bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.reader import open_checkpoint

F = pytest.importorskip("bitsandbytes.functional")


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [False, True])
def test_four_bit_equals_bitsandbytes_dequantize(tmp_path: Path, kind: str, nested: bool) -> None:
    w = torch.randn(48, 200, generator=torch.Generator().manual_seed(10))
    q, state = F.quantize_4bit(w, blocksize=64, quant_type=kind, compress_statistics=nested)
    key = "model.layers.0.mlp.up_proj.weight"
    tensors = {key: q} | {f"{key}.{k}": v for k, v in state.as_dict(packed=True).items()}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ref = F.dequantize_4bit(q, state).numpy()
    with open_checkpoint(tmp_path / "model.safetensors") as ckpt:
        [lt] = ckpt.logical
        assert (lt.key, lt.scheme, lt.shape, lt.group_size) == (key, f"bnb-{kind}", (48, 200), 64)
        assert np.array_equal(lt.dequantize().numpy(), ref)
        assert np.array_equal(np.concatenate([c.numpy() for c in lt.chunks(300)]), ref.ravel())


def test_int8_equals_bitsandbytes_vectorwise_dequant(tmp_path: Path) -> None:
    w = torch.randn(40, 72, generator=torch.Generator().manual_seed(11))
    cb, scb, _ = F.int8_vectorwise_quant(w)
    key = "model.layers.0.self_attn.v_proj"
    save_file({f"{key}.weight": cb, f"{key}.SCB": scb}, str(tmp_path / "model.safetensors"))
    ref = F.int8_vectorwise_dequant(cb, scb).numpy()
    with open_checkpoint(tmp_path / "model.safetensors") as ckpt:
        [lt] = ckpt.logical
        assert lt.scheme == "bnb-int8" and np.array_equal(lt.dequantize().numpy(), ref)
