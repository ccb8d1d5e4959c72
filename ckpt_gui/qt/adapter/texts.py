"""What the Adapter tab's lines say: the adapter in one line, the base and how it was paired,
the warnings (config targets that match no base weight, modules with no base weight), the
untrained modules and the notes left. Plain strings from core objects; Qt-free."""

from __future__ import annotations

from pathlib import Path

from ckpt_gui.core.adapters import Adapter, AdapterReport
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.units import float_text

SHOWN_UNMATCHED = 8  # target names listed in the warning line
# Notes of the report that have lines of their own.
_SAID = ("modules are untrained", "target_modules entries", "have no weight in the base")
NO_BASE = "No base model: open one to see ‖ΔW‖/‖W‖ and to merge"


def describe_adapter(adapter: Adapter) -> str:
    """``LoRA adapter default · r 16, alpha 32 · 24 target modules · rsLoRA``."""
    config = adapter.config
    modules = len(adapter.tensors.modules)
    parts = [
        f"LoRA adapter {printable(adapter.name, 60)}",
        f"r {config.r}, alpha {float_text(config.alpha)}",
        f"{modules} target module{'s' * (modules != 1)}",
    ]
    if adapter.tensors.saved:
        parts.append(f"{len(adapter.tensors.saved)} saved tensors")
    extras = [name for name, on in (("rsLoRA", config.use_rslora), ("DoRA", config.use_dora)) if on]
    if extras:
        parts.append(", ".join(extras))
    return "  ·  ".join(parts)


def base_line(base: Path | None, report: AdapterReport | None, modules: int) -> str:
    """The base model and, once reported, how many modules and saved tensors it paired."""
    if base is None:
        return NO_BASE
    text = f"Base: {base}"
    if report is not None and report.base_match is not None:
        match = report.base_match
        text += f"  ·  {match.matched} of {modules + len(report.saved)} paired ({match.describe()})"
    return text


def warning_lines(report: AdapterReport | None) -> list[str]:
    """Config targets that match no base weight; adapter modules with no base weight."""
    if report is None:
        return []
    lines = []
    if report.unmatched:
        n = len(report.unmatched)
        shown = ", ".join(printable(t, 60) for t in report.unmatched[:SHOWN_UNMATCHED])
        more = f" and {n - SHOWN_UNMATCHED} more" if n > SHOWN_UNMATCHED else ""
        verb = "matches" if n == 1 else "match"
        lines.append(
            f"⚠ {n} target module{'s' * (n != 1)} in adapter_config.json {verb} no base "
            f"weight: {shown}{more}"
        )
    if report.missing:
        n = len(report.missing)
        first = printable(report.missing[0], 120)
        lines.append(
            f"⚠ {n} adapter module{'s' * (n != 1)} {'has' if n == 1 else 'have'} no weight "
            f"in the base (first: {first}): is this the right base model?"
        )
    return lines


def untrained_line(report: AdapterReport | None) -> str:
    """How many modules have a factor that is all zeros (ΔW = 0), or ""."""
    untrained = [m for m in report.modules if m.untrained] if report is not None else []
    if not untrained or report is None:
        return ""
    zero = sorted({m.zero_factor or "" for m in untrained})
    which = " or ".join(z for z in zero if z) or "a factor"
    return (
        f"⚠ {len(untrained)} of {len(report.modules)} modules are untrained: {which} "
        "all zeros, so ΔW = 0 there (marked ⚠ below)"
    )


def note_lines(found_notes: list[str], report: AdapterReport | None) -> list[str]:
    """The notes of the adapters found and of the report that no other line says."""
    notes = list(found_notes)
    if report is not None:
        notes += [n for n in report.notes if not any(s in n for s in _SAID)]
    return [printable(n, 300) for n in notes]
