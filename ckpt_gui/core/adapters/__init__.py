"""LoRA/PEFT adapters: open one with or without its base model, see what it changes module by
module (computed from the factors, never forming ΔW), and merge it into the base.

- ``find_adapters(ckpt)``: the adapters an opened checkpoint holds (``AdapterSet``, with the
  extra adapters PEFT saves in sub-folders); each ``Adapter`` has its checked config and its
  tensors sorted into ``LoraModule``s (A and B as tree nodes), saved modules and the rest.
- ``iter_report(adapter, base=None)``: a generator of ``ModuleReport``s (rank, alpha, scale,
  ‖ΔW‖, stable rank, singular values, untrained, ‖W‖ with a base) returning the
  ``AdapterReport``; ``adapter_report`` runs it to the end.
- ``pair_with_base``: each module's base weight, and the config targets that match none.
- ``merge_targets`` and ``merged_checkpoint``: what a merge changes, as a checkpoint view that
  ``core.export.merge.iter_merge_export`` writes and verifies.
"""

from __future__ import annotations

from ckpt_gui.core.adapters.base import BaseMatch, BasePairing, pair_with_base
from ckpt_gui.core.adapters.config import CONFIG_NAME, AdapterConfig, read_adapter_config
from ckpt_gui.core.adapters.found import (
    Adapter,
    AdapterError,
    AdapterSet,
    config_path,
    find_adapters,
    is_lora_adapter,
)
from ckpt_gui.core.adapters.lowrank import DeltaNumbers, delta_numbers
from ckpt_gui.core.adapters.merge import (
    MergeSpec,
    MergeTarget,
    merge_targets,
    merged_checkpoint,
    merged_weight,
)
from ckpt_gui.core.adapters.modules import AdapterTensors, LoraModule, SavedTensor
from ckpt_gui.core.adapters.patterns import AdapterConfigError
from ckpt_gui.core.adapters.report import (
    AdapterReport,
    ModuleReport,
    adapter_report,
    iter_report,
    module_report,
)

__all__ = [
    "CONFIG_NAME",
    "Adapter",
    "AdapterConfig",
    "AdapterConfigError",
    "AdapterError",
    "AdapterReport",
    "AdapterSet",
    "AdapterTensors",
    "BaseMatch",
    "BasePairing",
    "DeltaNumbers",
    "LoraModule",
    "MergeSpec",
    "MergeTarget",
    "ModuleReport",
    "SavedTensor",
    "adapter_report",
    "config_path",
    "delta_numbers",
    "find_adapters",
    "is_lora_adapter",
    "iter_report",
    "merge_targets",
    "merged_checkpoint",
    "merged_weight",
    "module_report",
    "pair_with_base",
    "read_adapter_config",
]
