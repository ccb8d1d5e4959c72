"""GGUF files written with the gguf package's own writer and quantizer; the references are
``gguf.quants.dequantize`` of the same bytes, and the Hugging Face originals they came from."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import save_file

N_HEAD, N_KV, HIDDEN, FFN = 4, 2, 256, 256


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf ``LlamaModel.permute`` of q_proj and k_proj rows."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of ``permute``."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def llama(folder: Path, qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.Q8_0):
    """A one-block llama: HF weights (safetensors, float32) and their GGUF conversion, with
    q/k permuted as llama.cpp does and every 2-D weight quantized to ``qtype``."""
    r = np.random.default_rng(8)
    head = HIDDEN // N_HEAD
    hf = {
        "model.embed_tokens.weight": r.standard_normal((32, HIDDEN)),
        "model.layers.0.self_attn.q_proj.weight": r.standard_normal((HIDDEN, HIDDEN)),
        "model.layers.0.self_attn.k_proj.weight": r.standard_normal((N_KV * head, HIDDEN)),
        "model.layers.0.mlp.down_proj.weight": r.standard_normal((HIDDEN, FFN)),
        "model.layers.0.input_layernorm.weight": r.standard_normal(HIDDEN),
    }
    hf = {k: (v * 0.05).astype(np.float32) for k, v in hf.items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v) for k, v in hf.items()}, str(folder / "hf.safetensors"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 1)
    path = folder / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_KV)
    writer.add_embedding_length(HIDDEN)
    writer.add_token_list([f"t{i}" for i in range(40)])
    raw: dict[str, np.ndarray] = {}
    for key, value in hf.items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        assert name is not None, key
        if "q_proj" in key:
            value = permute(value, N_HEAD)
        elif "k_proj" in key:
            value = permute(value, N_KV)
        if value.ndim == 2:
            data = gguf.quants.quantize(value, qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)
        else:
            data = value
            writer.add_tensor(name, data)
        raw[name] = data
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, hf, raw
