"""How the per-layer chart groups an adapter's modules: by the numbered block they sit in
(``model.layers.3``), one bar per kind of module inside it (``self_attn.q_proj``), so that a
7-module adapter over 32 blocks reads as 32 groups of 7 coloured bars. Qt-free."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Bar:
    module: str  # the adapter's module path (what the table's rows are keyed by)
    name: str  # the module in the model's naming
    series: int  # index into ``LayerGroups.series`` (-1: a module outside any block)
    ratio: float | None  # ‖ΔW‖/‖W‖; None when there is none (no base weight, ‖W‖ = 0)


@dataclass
class LayerGroup:
    name: str  # model.layers.3, or the module itself when it is in no numbered block
    label: str  # the name without what every group shares: "3", "lm_head"
    bars: list[Bar] = field(default_factory=list)


@dataclass
class LayerGroups:
    groups: list[LayerGroup]
    series: list[str]  # the kinds of module found in blocks, in model order: "self_attn.q_proj"
    prefix: str = ""  # what the groups' names share and their labels leave out: "model.layers"

    @property
    def series_labels(self) -> list[str]:
        """The series as short as they stay distinct: "q_proj" rather than "self_attn.q_proj"."""
        return shortest_distinct(self.series)


def split_layer(name: str) -> tuple[str, str]:
    """``model.layers.3.self_attn.q_proj`` -> (``model.layers.3``, ``self_attn.q_proj``); a name
    with no numbered component below its top is a group of its own: (name, "")."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1]), ".".join(parts[i + 1 :])
    return name, ""


def layer_groups(rows: list[tuple[str, str, float | None]]) -> LayerGroups:
    """Group ``(module, name, ratio)`` rows, in the order given (model order), by block."""
    groups: dict[str, LayerGroup] = {}
    series: dict[str, int] = {}
    for module, name, ratio in rows:
        head, rest = split_layer(name)
        group = groups.get(head)
        if group is None:
            group = groups[head] = LayerGroup(head, head)
        index = series.setdefault(rest, len(series)) if rest else -1
        group.bars.append(Bar(module, name, index, ratio))
    ordered = list(groups.values())
    # Blocks are named by what tells them apart ("3"); a module outside them by its name.
    blocks = [g for g in ordered if any(bar.series >= 0 for bar in g.bars)]
    labels = without_common_prefix([g.name for g in blocks])
    for group, label in zip(blocks, labels):
        group.label = label
    prefix = ""
    if blocks and labels[0] != blocks[0].name:
        prefix = blocks[0].name[: -len(labels[0])].rstrip(".")
    return LayerGroups(ordered, list(series), prefix)


def without_common_prefix(names: list[str]) -> list[str]:
    """Drop the dotted components every name shares (``model.layers.``), keeping at least one."""
    parts = [n.split(".") for n in names]
    common = 0
    while (
        len(parts) > 1
        and all(len(p) > common + 1 for p in parts)
        and len({p[common] for p in parts}) == 1
    ):
        common += 1
    return [".".join(p[common:]) for p in parts]


def shortest_distinct(names: list[str]) -> list[str]:
    """Each dotted name by its last components, as few as keep the names apart."""
    out = []
    for name in names:
        parts = name.split(".")
        for take in range(1, len(parts) + 1):
            short = ".".join(parts[-take:])
            if sum(1 for other in names if other == short or other.endswith("." + short)) == 1:
                break
        out.append(short)
    return out
