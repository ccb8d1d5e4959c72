"""``iter_dequantize_export``: a quantized checkpoint written with its logical (dequantized)
weights in place of their raw parts, every other tensor as the plan keeps it, like any export
(planned, written, verified, renamed into place).

The export runs over a view of the checkpoint (``dequantized_checkpoint``) whose logical
tensor nodes stream their row blocks into the writers (``writers.Streamed``): never the whole
dequantized model in memory, never a whole weight either. Each block is dequantized to float32
and cast once, to the planned dtype (the weight's own, e.g. the config's ``torch_dtype``, unless
``--dtype`` says otherwise). The proof is ``dequantize_verify.py``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export.dequantize_verify import dequantize_verifier
from ckpt_gui.core.export.options import ExportError, ExportOptions
from ckpt_gui.core.export.plan import state_dict_candidates
from ckpt_gui.core.export.run import ExportProgress, ExportResult, iter_export
from ckpt_gui.core.export.writers import CancelCheck
from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.quant.view import logical_info, summary
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node

QUANTIZED = "quantized"  # the source container of a logical tensor in the view


def dequantized_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """A view of ``ckpt`` whose tree holds each quantized weight's logical tensor (container
    "quantized", ``TensorInfo.quant`` its ``LogicalTensor``) at the place of its first part,
    and none of its parts. Python types are dropped (the export writes plain containers from
    the tree); a tree with no state_dict (a GGUF file) is the model's. Refuses a checkpoint
    with no quantized weight."""
    if not ckpt.logical:
        raise ExportError(
            f"{ckpt.path}: no quantized weights to dequantize (--dequantize writes the "
            "weights of a quantized checkpoint: fp8, mxfp4, gptq, awq, compressed-tensors, "
            "bitsandbytes, GGUF)"
        )
    keys = {n.key for n in ckpt.root.tensors()}
    at: dict[str, LogicalTensor] = {}
    parts: set[str] = set()
    for lt in ckpt.logical:
        present = [k for k in lt.parts if k in keys]
        if present:
            at[present[0]] = lt
            parts.update(present)
    root = _copy(ckpt.root, at, parts)
    if not state_dict_candidates(root):
        root.label = "model"
    return ckpt.with_root(root)  # no ``logical``: its logical tensors are its tensors now


def _copy(root: Node, at: dict[str, LogicalTensor], parts: set[str]) -> Node:
    top = _plain(root)
    stack = [(root, top)]
    while stack:
        old, new = stack.pop()
        for child in old.children:
            if child.kind == "tensor" and child.key in parts:
                lt = at.get(child.key)
                if lt is not None:
                    new.add(_logical_node(lt, new.key))
                continue
            copy = new.add(_plain(child))
            if child.children:
                stack.append((child, copy))
    return top


def _plain(node: Node) -> Node:
    return dataclasses.replace(
        node, parent=None, children=[], type_name=None, key_type=None, overrides=()
    )


def _logical_node(lt: LogicalTensor, parent_key: str) -> Node:
    info = dataclasses.replace(logical_info(lt), container=QUANTIZED)
    inside = parent_key and lt.key.startswith(parent_key + ".")
    name = lt.key[len(parent_key) + 1 :] if inside else lt.key
    return Node(name=name, key=lt.key, kind="tensor", tensor=info, role="parameter")


def iter_dequantize_export(
    source: Checkpoint | str | os.PathLike[str],
    destination: str | os.PathLike[str],
    options: ExportOptions,
    cancel: CancelCheck | None = None,
    *,
    overwrite: bool = False,
    trust: bool = False,
) -> Generator[ExportProgress, None, ExportResult]:
    """Write ``source`` with its quantized weights dequantized (as ``options`` say: dtype,
    format, shards, globs) to ``destination``. Returns the verified ``ExportResult``; raises a
    ``CheckpointError`` with one line when it refuses (no quantized weight) or fails."""
    own = not isinstance(source, Checkpoint)
    ckpt = source if isinstance(source, Checkpoint) else open_checkpoint(source, trust=trust)
    try:
        view = dequantized_checkpoint(ckpt)
        again: dict[str, Any] = {"trust": ckpt.view == "trusted"}
        result = yield from iter_export(
            view,
            destination,
            options,
            cancel,
            overwrite=overwrite,
            verifier=dequantize_verifier(lambda: open_checkpoint(ckpt.path, **again)),
        )
        written = {k.key for k in result.plan.kept if k.source_container == QUANTIZED}
        chosen = [lt for lt in ckpt.logical if lt.key in written]
        if chosen:
            what = summary(chosen).removeprefix("quantized: ").removesuffix(", shown dequantized")
            result.notes.append(f"dequantized {what}")
        return result
    finally:
        if own:
            ckpt.close()
