"""``iter_merge_export``: a LoRA adapter merged into its base model, written like any export
(planned, streamed one module at a time, verified, renamed into place), never changing either
source. The merge's own arithmetic is in ``core/adapters/merge.py``; its proof is
``merge_verify.py``, which recomputes every merged weight independently of the writer.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

from ckpt_gui.core.adapters import (
    Adapter,
    AdapterError,
    AdapterSet,
    find_adapters,
    merge_targets,
    merged_checkpoint,
    pair_with_base,
)
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export.atomic import check_destination
from ckpt_gui.core.export.merge_verify import merge_verifier
from ckpt_gui.core.export.options import ExportOptions
from ckpt_gui.core.export.run import ExportProgress, ExportResult, iter_export
from ckpt_gui.core.export.writers import CancelCheck
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.safety.filecheck import printable


def merged_adapter(found: AdapterSet) -> Adapter:
    """The adapter a merge takes from what was opened: the one at the top of the folder (PEFT's
    "default"), or the only one; a folder of several adapter folders must be narrowed down."""
    first = found.adapters[0]
    if first.prefix == "" and first.name == "default":
        return first
    if len(found.adapters) == 1:
        return first
    names = ", ".join(printable(a.name, 60) for a in found.adapters)
    raise AdapterError(
        f"{printable(str(first.folder.parent), 200)} holds several adapters ({names}); "
        "give the folder of the one to merge"
    )


def iter_merge_export(
    adapter_source: Checkpoint | str | os.PathLike[str],
    base_source: Checkpoint | str | os.PathLike[str],
    destination: str | os.PathLike[str],
    options: ExportOptions,
    cancel: CancelCheck | None = None,
    *,
    overwrite: bool = False,
) -> Generator[ExportProgress, None, ExportResult]:
    """Write ``base`` with the adapter merged (W + scale·B·A for every target module, the
    saved modules replaced, every other tensor as the base has it) to ``destination``, as
    ``options`` say (dtype, format, shards). Returns the verified ``ExportResult``; raises a
    ``CheckpointError`` with one line when it refuses or fails."""
    opened: list[Checkpoint] = []
    found: AdapterSet | None = None
    view: Checkpoint | None = None
    try:
        adapter_ckpt = _opened(adapter_source, opened)
        base = _opened(base_source, opened)
        found = find_adapters(adapter_ckpt)
        adapter = merged_adapter(found)
        pairing = pair_with_base(adapter.tensors, adapter.config, base)
        spec = merge_targets(adapter, pairing)
        view = merged_checkpoint(base, adapter, spec)
        dest = Path(destination)
        for path in (adapter_ckpt.path, adapter.folder):
            # The adapter is a source too: refused as a destination like the base.
            check_destination(path, dest, False, [], overwrite=True)
        result = yield from iter_export(
            view,
            destination,
            options,
            cancel,
            overwrite=overwrite,
            verifier=merge_verifier(spec),
        )
        result.notes.append(
            f"merged {len(spec.targets)} module{'s' * (len(spec.targets) != 1)} of adapter "
            f"{printable(adapter.name, 60)} ({adapter.folder})"
            + (f" and replaced {len(spec.replaced)} saved tensors" if spec.replaced else "")
        )
        if len(found.adapters) > 1:
            others = ", ".join(printable(a.name, 60) for a in found.adapters if a is not adapter)
            result.notes.append(f"not merged: the other adapters in the folder ({others})")
        if pairing.unmatched:
            shown = ", ".join(printable(t, 60) for t in pairing.unmatched[:8])
            result.notes.append(f"target_modules entries that match no base weight: {shown}")
        return result
    finally:
        if view is not None:
            view.close()  # waits for a merged weight being computed ahead
        if found is not None:
            found.close()
        for ckpt in opened:
            ckpt.close()


def _opened(source: Checkpoint | str | os.PathLike[str], opened: list[Checkpoint]) -> Checkpoint:
    if isinstance(source, Checkpoint):
        return source
    ckpt = open_checkpoint(source)
    opened.append(ckpt)
    return ckpt
