"""A GGUF file's tensors under the Hugging Face names of another checkpoint, for comparing a
GGUF conversion with its original: llama.cpp names (``blk.0.attn_q.weight``) are mapped with
the gguf package's tensor name map, and the q/k row permutation llama.cpp's converter applies
to llama models is undone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.formats.gguf_file import METADATA
from ckpt_gui.core.tree import Node

# Architectures whose converter permutes q/k rows (convert_hf_to_gguf.py LlamaModel.permute).
PERMUTED = frozenset({"llama"})


def hf_leaves(ckpt: Checkpoint, leaves: list[Node], hf_keys: Iterable[str]) -> list[Node] | None:
    """``leaves`` of the GGUF ``ckpt`` with every tensor that maps to one of ``hf_keys``
    renamed to it (q/k in Hugging Face's row order); key-values left out. None when the
    architecture is not in the gguf package's map."""
    import gguf

    meta = {n.name: n.value for n in (ckpt.find(METADATA) or Node("", "", "dict")).children}
    arch = meta.get("general.architecture")
    archs = {name: a for a, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs or not isinstance(meta.get(f"{arch}.block_count"), int):
        return None
    names = gguf.get_tensor_name_map(archs[arch], meta[f"{arch}.block_count"])
    to_hf: dict[str, str] = {}
    for key in hf_keys:
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is not None:
            to_hf.setdefault(name, key)
    heads = {
        "attn_q.weight": meta.get(f"{arch}.attention.head_count"),
        "attn_k.weight": meta.get(f"{arch}.attention.head_count_kv")
        or meta.get(f"{arch}.attention.head_count"),
    }
    out = []
    for node in leaves:
        if node.kind != "tensor":
            continue
        hf = to_hf.get(node.key)
        if hf is None:
            out.append(node)
            continue
        n_head = next((h for end, h in heads.items() if node.key.endswith(end)), None)
        order = _order(node, n_head) if arch in PERMUTED and isinstance(n_head, int) else None
        out.append(_renamed(node, hf, order))
    return out


def _order(node: Node, n_head: int) -> Any:
    """For each Hugging Face row, the GGUF row holding it: llama.cpp's permute put row
    (h, i, j) of (heads, 2, half) at (h, j, i)."""
    import torch

    assert node.tensor is not None
    rows = node.tensor.shape[0] if node.tensor.shape else 0
    if n_head <= 0 or rows % (2 * n_head):
        return None
    return torch.arange(rows).reshape(n_head, rows // n_head // 2, 2).transpose(1, 2).reshape(-1)


def _renamed(node: Node, key: str, order: Any) -> Node:
    info = node.tensor
    assert info is not None
    if order is not None:
        if info.quant is not None:
            lt = info.quant.reordered(order)
            info = replace(info, quant=lt, loader=lt.dequantize)
        else:
            loader = info.loader
            assert loader is not None
            info = replace(info, loader=lambda: loader()[order])
    copy = Node(name=key, key=key, kind="tensor", tensor=info, role=node.role)
    copy.children = node.children
    return copy
