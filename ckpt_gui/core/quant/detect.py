"""``find_quantized``: the logical tensors of a checkpoint, recognised from tensor names, dtypes
and shapes and the ``quantization_config`` of its config.json. A group of tensors that does not
fit a scheme exactly stays raw: nothing is guessed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ckpt_gui.core.quant import bnb, compressed, fp8, gptq, mxfp4
from ckpt_gui.core.quant.context import Context
from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.tree import Node

Recogniser = Callable[[str, Context], "LogicalTensor | None"]
# Tried in this order on every key; each looks only at keys ending the way it expects.
RECOGNISERS: tuple[Recogniser, ...] = (
    gptq.recognise,
    compressed.recognise,
    mxfp4.recognise,
    fp8.recognise,
    bnb.recognise,
)
# Suffixes a recogniser starts from: other keys are skipped at once.
_ANCHORS = (".qweight", ".weight_packed", "_blocks", "weight")
_PART_NAMES = (".qweight", ".weight_packed", "_scales", "_scale_inv", "_scale", ".absmax", ".SCB")


def find_quantized(
    nodes: Iterable[Node], config: dict[str, Any] | None = None
) -> list[LogicalTensor]:
    """The logical tensors among ``nodes`` (a checkpoint's tensors), in the order of their
    first part; each raw tensor belongs to at most one. ``config``: the model's config.json."""
    ctx = Context.of(nodes, config)
    used: set[str] = set()
    found: list[LogicalTensor] = []
    for key in ctx.nodes:
        if key in used or not key.endswith(_ANCHORS):
            continue
        for recognise in RECOGNISERS:
            try:
                lt = recognise(key, ctx)
            except (ValueError, RuntimeError, IndexError, KeyError):
                lt = None  # a part that cannot be read as its scheme says: left raw
            if lt is not None and not used.intersection(lt.parts):
                found.append(lt)
                used.update(lt.parts)
                break
    return found


def might_be_quantized(nodes: Iterable[Node]) -> bool:
    """Whether any tensor is named like a part of a quantized weight: only then is a config
    read and the recognisers run."""
    return any(n.key.endswith(_PART_NAMES) for n in nodes)


def config_beside(path: Path, configs: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The config.json that describes ``path``'s weights: the one the reader read for a
    folder, else the one beside the file (read with the reader's limits), else None."""
    if configs and isinstance(configs.get("config.json"), dict):
        return configs["config.json"]
    from ckpt_gui.core.formats.folders import read_config

    folder = path if path.is_dir() else path.parent
    candidate = folder / "config.json"
    if not os.path.lexists(candidate):
        return None
    config, _ = read_config(candidate, "config.json")
    return config
