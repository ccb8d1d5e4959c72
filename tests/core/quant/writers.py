"""Quantized checkpoints written from each scheme's documented bit layout, with the reference
dequantized values computed here in NumPy (float32, one rounding per product, as each reference
implementation computes it), independently of ``ckpt_gui.core.quant``.

compressed-tensors is not installed for these tests (it pulls transformers); its
``pack_to_int32`` layout is written out below from its source (``pack_quantized/helpers.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

Refs = dict[str, np.ndarray]
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
# bitsandbytes' NF4 code book (functional.py, get_4bit_type("nf4")).
NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _save(folder: Path, tensors: dict[str, torch.Tensor], quant: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    if quant is not None:
        config = {"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": quant}
        (folder / "config.json").write_text(json.dumps(config))
    return path


def _pack_rows(values: np.ndarray) -> np.ndarray:
    """Eight 4-bit values per uint32 along axis 0, value j of a word at bits 4j."""
    out = np.zeros((values.shape[0] // 8, *values.shape[1:]), dtype=np.uint32)
    for j in range(8):
        out |= values[j::8].astype(np.uint32) << np.uint32(4 * j)
    return out


def _i32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int32))


def gptq(folder: Path, out: int = 48, cols: int = 256, group: int = 64, act_order: bool = False):
    """AutoGPTQ's QuantLinear.pack (v1 format: zeros stored minus one)."""
    r = _rng(1)
    q = r.integers(0, 16, (cols, out))  # W^T, as GPTQ packs it
    groups = cols // group
    zeros = r.integers(1, 16, (groups, out))
    scales = (r.random((groups, out)) * 0.02 + 0.001).astype(np.float16)
    g_idx = np.arange(cols) // group
    if act_order:
        g_idx = r.permutation(g_idx)
    tensors = {
        "model.layers.0.mlp.down_proj.qweight": _i32(_pack_rows(q)),
        "model.layers.0.mlp.down_proj.qzeros": _i32(_pack_rows((zeros - 1).T).T),
        "model.layers.0.mlp.down_proj.scales": torch.from_numpy(scales),
        "model.layers.0.mlp.down_proj.g_idx": torch.from_numpy(g_idx.astype(np.int32)),
        "model.norm.weight": torch.ones(out),
    }
    ref = (q - zeros[g_idx]).astype(np.float32) * scales[g_idx].astype(np.float32)
    quant = {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": act_order}
    path = _save(folder, tensors, quant)
    return path, {"model.layers.0.mlp.down_proj.weight": ref.T}


def _awq_pack(values: np.ndarray) -> np.ndarray:
    """AutoAWQ's WQLinear_GEMM packing: along the last axis, nibble i = column AWQ_ORDER[i]."""
    out = np.zeros((values.shape[0], values.shape[1] // 8), dtype=np.uint32)
    for col in range(out.shape[1]):
        for i in range(8):
            out[:, col] |= values[:, col * 8 + AWQ_ORDER[i]].astype(np.uint32) << np.uint32(4 * i)
    return out


def awq(folder: Path, out: int = 64, cols: int = 256, group: int = 128):
    r = _rng(2)
    q = r.integers(0, 16, (cols, out))
    groups = cols // group
    zeros = r.integers(0, 16, (groups, out))
    scales = (r.random((groups, out)) * 0.02 + 0.001).astype(np.float16)
    g = np.arange(cols) // group
    key = "model.layers.0.self_attn.q_proj"
    tensors = {
        f"{key}.qweight": _i32(_awq_pack(q)),
        f"{key}.qzeros": _i32(_awq_pack(zeros)),
        f"{key}.scales": torch.from_numpy(scales),
    }
    ref = (q - zeros[g]).astype(np.float32) * scales[g].astype(np.float32)
    quant = {"quant_method": "awq", "bits": 4, "group_size": group, "version": "gemm"}
    return _save(folder, tensors, quant), {f"{key}.weight": ref.T}


def _ct_pack(values: np.ndarray, bits: int) -> np.ndarray:
    """compressed-tensors' pack_to_int32(value, num_bits, packed_dim=1): value + 2**(bits-1),
    element i of a row at bit i*bits of the row's bit string (4-bit: 8 per word)."""
    per = 32 // bits
    shifted = (values + (1 << (bits - 1))).astype(np.uint32)
    out = np.zeros((values.shape[0], values.shape[1] // per), dtype=np.uint32)
    for j in range(per):
        out |= shifted[:, j::per] << np.uint32(bits * j)
    return out


def compressed(folder: Path, out: int = 32, cols: int = 256, group: int = 64, asym: bool = False):
    r = _rng(3)
    q = r.integers(-8, 8, (out, cols))
    groups = cols // group
    scale = torch.from_numpy((r.random((out, groups)) * 0.02 + 0.001).astype(np.float32))
    scale = scale.to(torch.bfloat16)
    key = "model.layers.0.mlp.up_proj"
    tensors = {
        f"{key}.weight_packed": _i32(_ct_pack(q, 4)),
        f"{key}.weight_scale": scale,
        f"{key}.weight_shape": torch.tensor([out, cols]),
    }
    zp = np.zeros((out, groups), dtype=np.int64)
    if asym:
        zp = r.integers(-8, 8, (out, groups))
        tensors[f"{key}.weight_zero_point"] = _i32(_ct_pack(zp.T, 4)).T.contiguous()
    s = scale.float().numpy()
    g = np.arange(cols) // group
    ref = (q - zp[:, g]).astype(np.float32) * s[:, g]
    weights = {"num_bits": 4, "group_size": group, "symmetric": not asym, "strategy": "group"}
    quant = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
    }
    return _save(folder, tensors, quant), {f"{key}.weight": ref}


def fp8(folder: Path, block: bool, out: int = 300, cols: int = 260):
    r = torch.Generator().manual_seed(4)
    w = (torch.randn(out, cols, generator=r) * 100).to(torch.float8_e4m3fn)
    key = "model.layers.0.self_attn.o_proj.weight"
    if block:
        s = torch.rand(-(-out // 128), -(-cols // 128), generator=r) * 0.01
        tensors = {key: w, key + "_scale_inv": s}
        full = s.numpy().repeat(128, 0).repeat(128, 1)[:out, :cols]
        quant = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    else:
        s = torch.tensor(0.0123)
        tensors = {key: w, key + "_scale": s, key[: -len("weight")] + "input_scale": s.clone()}
        full = np.float32(0.0123)
        quant = {"quant_method": "compressed-tensors", "format": "float-quantized"}
    ref = w.float().numpy() * full
    return _save(folder, tensors, quant), {key: ref}


def _e2m1(code: np.ndarray) -> np.ndarray:
    """OCP E2M1: sign bit 3, exponent bits 2-1 (bias 1), mantissa bit 0."""
    sign = np.where(code & 8, -1.0, 1.0)
    exp, man = (code >> 1) & 3, code & 1
    mag = np.where(exp == 0, man * 0.5, 2.0 ** (exp - 1) * (1 + man / 2))
    return (sign * mag).astype(np.float32)


def mxfp4(folder: Path, experts: int = 2, out: int = 6, groups: int = 3):
    """gpt-oss experts' blocks (experts, out, blocks, 16), or with ``experts=0`` a 2-D weight."""
    r = _rng(5)
    lead = (experts, out) if experts else (out,)
    blocks = r.integers(0, 256, (*lead, groups, 16)).astype(np.uint8)
    scales = r.integers(118, 136, (*lead, groups)).astype(np.uint8)
    key = "model.layers.0.mlp.experts.gate_up_proj"
    tensors = {
        key + "_blocks": torch.from_numpy(blocks),
        key + "_scales": torch.from_numpy(scales),
    }
    values = np.stack((_e2m1(blocks & 15), _e2m1(blocks >> 4)), -1).reshape(*lead, groups, 32)
    exp = torch.from_numpy(scales).view(torch.float8_e8m0fnu).float().numpy()
    ref = (values * exp[..., None]).reshape(*lead, groups * 32)
    ref = ref.transpose(0, 2, 1) if experts else ref  # transformers' (experts, in, out)
    return _save(folder, tensors, {"quant_method": "mxfp4"}), {key: ref}


def bnb4(folder: Path, kind: str = "nf4", out: int = 24, cols: int = 40, nested: bool = False):
    r = _rng(6)
    n, block = out * cols, 64
    codes = r.integers(0, 16, n).astype(np.uint8)
    absmax = (r.random(-(-n // block)) + 0.5).astype(np.float32)
    table = np.array(NF4 if kind == "nf4" else np.linspace(-1, 1, 16), dtype=np.float32)
    key = "model.layers.0.mlp.gate_proj.weight"
    state = {"quant_type": kind, "blocksize": block, "dtype": "bfloat16", "shape": [out, cols]}
    tensors = {
        key: torch.from_numpy((codes[0::2] << 4) | codes[1::2]).reshape(-1, 1),
        key + ".quant_map": torch.from_numpy(table),
    }
    scale = absmax
    if nested:
        nested_table = np.linspace(-1, 1, 256).astype(np.float32)
        acodes = r.integers(0, 256, absmax.size).astype(np.uint8)
        nabs = np.array([0.7], dtype=np.float32)
        scale = nested_table[acodes] * nabs[0] + np.float32(0.25)
        state.update(nested_blocksize=256, nested_offset=0.25, nested_dtype="float32")
        tensors[key + ".absmax"] = torch.from_numpy(acodes)
        tensors[key + ".nested_absmax"] = torch.from_numpy(nabs)
        tensors[key + ".nested_quant_map"] = torch.from_numpy(nested_table)
    else:
        tensors[key + ".absmax"] = torch.from_numpy(absmax)
    raw = json.dumps(state).encode()
    tensors[f"{key}.quant_state.bitsandbytes__{kind}"] = torch.tensor(list(raw), dtype=torch.uint8)
    ref = (table[codes] * np.repeat(scale, block)[:n]).reshape(out, cols)
    return _save(folder, tensors, None), {key: ref}


def bnb8(folder: Path, out: int = 20, cols: int = 30):
    r = _rng(7)
    w = r.integers(-127, 128, (out, cols)).astype(np.int8)
    scb = (r.random(out) * 3).astype(np.float32)
    key = "model.layers.0.self_attn.v_proj"
    tensors = {f"{key}.weight": torch.from_numpy(w), f"{key}.SCB": torch.from_numpy(scb)}
    ref = w.astype(np.float32) * scb[:, None] * np.float32(7.874015718698502e-3)
    return _save(folder, tensors, None), {f"{key}.weight": ref}
