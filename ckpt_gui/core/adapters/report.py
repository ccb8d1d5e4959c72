"""What an adapter changes, module by module: rank, alpha, scale, ‖ΔW‖, its stable rank and top
singular values, whether a factor is all zeros, and with a base model ‖W‖ and ‖ΔW‖/‖W‖.

``iter_report`` is a generator (every module is a progress and cancel point, as for statistics)
that yields one ``ModuleReport`` per target module and returns the ``AdapterReport``.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpt_gui.core.adapters.base import BaseMatch, BasePairing, pair_with_base
from ckpt_gui.core.adapters.found import Adapter
from ckpt_gui.core.adapters.lowrank import delta_numbers, frobenius_norm
from ckpt_gui.core.adapters.modules import LoraModule
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import Cancelled

FLAG_UNTRAINED = "untrained"


@dataclass
class ModuleReport:
    module: str  # the adapter's module path (base_model.model.layers.0.self_attn.q_proj)
    name: str  # the path in the model (layers.0.self_attn.q_proj)
    kind: str  # "linear" | "embedding" | "conv" | "unknown"
    r: int | None
    alpha: float
    scale: float
    a_key: str | None
    b_key: str | None
    magnitude_key: str | None = None  # DoRA
    delta_norm: float | None = None
    stable_rank: float | None = None
    singular_values: list[float] = field(default_factory=list)
    untrained: bool = False
    zero_factor: str | None = None  # "A", "B" or "A and B"
    base_key: str | None = None
    base_norm: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def relative(self) -> float | None:
        """‖ΔW‖/‖W‖ (None without a base, or when ‖W‖ is 0)."""
        if self.delta_norm is None or not self.base_norm or not math.isfinite(self.delta_norm):
            return None
        return self.delta_norm / self.base_norm

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "name": self.name,
            "kind": self.kind,
            "r": self.r,
            "alpha": self.alpha,
            "scale": self.scale,
            "delta_norm": _finite(self.delta_norm),
            "stable_rank": _finite(self.stable_rank),
            "singular_values": [_finite(s) for s in self.singular_values],
            "untrained": self.untrained,
            "base_key": self.base_key,
            "base_norm": self.base_norm,
            "relative": self.relative,
            "lora_A": self.a_key,
            "lora_B": self.b_key,
            "magnitude": self.magnitude_key,
            "flags": self.flags,
        }


@dataclass
class AdapterReport:
    name: str
    folder: Path
    type: str  # "lora"
    r: int  # the config's
    alpha: float
    use_rslora: bool
    use_dora: bool
    target_modules: list[str] | str | None
    modules: list[ModuleReport] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)  # modules_to_save tensors
    other: list[str] = field(default_factory=list)  # tensors neither factor nor saved
    base: Path | None = None
    base_match: BaseMatch | None = None
    unmatched: list[str] | None = None  # config targets matching no base weight (with a base)
    missing: list[str] = field(default_factory=list)  # modules with no base weight
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "name": self.name,
            "path": str(self.folder),
            "r": self.r,
            "alpha": self.alpha,
            "use_rslora": self.use_rslora,
            "use_dora": self.use_dora,
            "target_modules": self.target_modules,
            "targets": [m.to_json() for m in self.modules],
            "modules_to_save": self.saved,
            "other_tensors": self.other,
            "untrained": sum(m.untrained for m in self.modules),
        }
        if self.base is not None:
            out["base"] = str(self.base)
            out["base_match"] = self.base_match.to_json() if self.base_match else None
            out["unmatched"] = self.unmatched or []
            out["missing_base"] = self.missing
        out["notes"] = self.notes
        return out


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def iter_report(
    adapter: Adapter, base: Checkpoint | None = None, cancel: Any = None
) -> Generator[ModuleReport, None, AdapterReport]:
    """Yield a ``ModuleReport`` per target module (factors read, ΔW never formed; with
    ``base``, each base weight's norm read a chunk at a time); return the whole report."""
    config = adapter.config
    report = AdapterReport(
        name=adapter.name,
        folder=adapter.folder,
        type="lora",
        r=config.r,
        alpha=config.alpha,
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        target_modules=config.target_modules,
    )
    pairing: BasePairing | None = None
    if base is not None:
        pairing = pair_with_base(adapter.tensors, config, base)
        report.base, report.base_match = base.path, pairing.match
        report.unmatched, report.missing = pairing.unmatched, pairing.missing
    for module in adapter.tensors.modules:
        if cancel is not None and cancel():
            raise Cancelled()
        row = module_report(adapter, module, pairing)
        report.modules.append(row)
        yield row
    for saved in adapter.tensors.saved:
        info = saved.node.tensor
        assert info is not None
        base_node = pairing.saved.get(saved.node.key) if pairing else None
        report.saved.append(
            {
                "key": saved.node.key,
                "name": saved.name,
                "dtype": info.dtype,
                "shape": list(info.shape),
                "base_key": base_node.key if base_node is not None else None,
            }
        )
    report.other = [n.key for n in adapter.tensors.other]
    report.notes = _notes(report)
    return report


def module_report(
    adapter: Adapter, module: LoraModule, pairing: BasePairing | None = None
) -> ModuleReport:
    """The numbers of one target module (and of its base weight, when paired)."""
    config = adapter.config
    alpha, scale = config.alpha_for(module.name), config.scale_for(module.name)
    row = ModuleReport(
        module=module.module,
        name=module.name,
        kind=module.kind,
        r=module.r,
        alpha=alpha,
        scale=scale,
        a_key=module.a.key if module.a else None,
        b_key=module.b.key if module.b else None,
        magnitude_key=module.magnitude.key if module.magnitude else None,
    )
    if module.magnitude is not None:
        row.flags.append("DoRA")
    problem = module.problem()
    expected_r = config.rank_for(module.name)
    if problem is None and module.r != expected_r:
        problem = f"the config gives rank {expected_r}, the factors have rank {module.r}"
    if problem is not None:
        row.flags.append(problem)
    else:
        assert module.a is not None and module.b is not None
        numbers = delta_numbers(module.a.load(), module.b.load(), scale, module.kind)
        row.delta_norm = numbers.norm
        row.singular_values = numbers.singular_values
        row.stable_rank = numbers.stable_rank
        row.untrained = numbers.untrained
        if numbers.untrained:
            zero = [f for f, z in (("A", numbers.zero_a), ("B", numbers.zero_b)) if z]
            row.zero_factor = " and ".join(zero)
            row.flags.append(f"{FLAG_UNTRAINED}: {row.zero_factor} all zeros")
        if numbers.nonfinite:
            row.flags.append("NaN or Inf in the factors")
    if pairing is not None:
        node = pairing.weights.get(module.module)
        if node is not None:
            row.base_key = node.key
            row.base_norm = frobenius_norm(node.load())
        elif module.module in pairing.mismatch:
            row.flags.append(pairing.mismatch[module.module])
        else:
            row.flags.append("no base weight")
    return row


def adapter_report(adapter: Adapter, base: Checkpoint | None = None) -> AdapterReport:
    """``iter_report`` run to the end."""
    steps = iter_report(adapter, base)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            report: AdapterReport = stop.value
            return report


def _notes(report: AdapterReport) -> list[str]:
    notes = []
    if not report.modules:
        notes.append("the adapter holds no LoRA factors: it changes nothing")
    untrained = [m for m in report.modules if m.untrained]
    if untrained:
        notes.append(
            f"{len(untrained)} of {len(report.modules)} modules are untrained (a factor is all "
            "zeros, so ΔW = 0)"
        )
    if report.unmatched:
        shown = ", ".join(report.unmatched[:8])
        notes.append(f"target_modules entries that match no base weight: {shown}")
    if report.missing:
        notes.append(
            f"{len(report.missing)} adapter modules have no weight in the base "
            f"(first: {report.missing[0]})"
        )
    return notes
