"""``adapter_config.json``: read with a size limit, checked entry by entry, and turned into the
few numbers an analysis or a merge needs (the rank, alpha and scale of each module, which
modules the config targets). A malformed or hostile config is one ``AdapterConfigError`` line.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpt_gui.core.adapters.patterns import (
    AdapterConfigError,
    compile_pattern,
    pattern_key,
    wrapped,
)
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.formats.detect import read_small_file
from ckpt_gui.core.formats.folders import ADAPTER_CONFIG, MAX_CONFIG_BYTES
from ckpt_gui.core.safety.filecheck import printable

CONFIG_NAME = ADAPTER_CONFIG
MAX_ENTRIES = 10_000  # targets, patterns, modules to save: a real config has a handful
MAX_NAME_CHARS = 1024
MAX_RANK = 1 << 20
# Config entries whose adapters a plain W + scale·B·A merge would get wrong.
MERGE_UNSUPPORTED = (
    "lora_bias",
    "layer_replication",
    "target_parameters",
    "trainable_token_indices",
    "alora_invocation_tokens",
    "arrow_config",
    "use_bdlora",
    "use_qalora",
)


@dataclass
class AdapterConfig:
    """What a LoRA ``adapter_config.json`` says, checked."""

    path: Path
    peft_type: str
    r: int
    alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    target_modules: list[str] | str | None = None  # names (suffixes), or one regex
    exclude_modules: list[str] | str | None = None
    modules_to_save: list[str] = field(default_factory=list)
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    base_model: str | None = None  # base_model_name_or_path
    unsupported: list[str] = field(default_factory=list)  # MERGE_UNSUPPORTED entries that are set
    _rank_res: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)
    _alpha_res: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)
    _target_re: re.Pattern[str] | None = field(default=None, repr=False)
    _exclude_re: re.Pattern[str] | None = field(default=None, repr=False)

    @property
    def is_lora(self) -> bool:
        return self.peft_type == "LORA"

    def rank_for(self, name: str) -> int:
        """The rank PEFT gives the module ``name`` (its path in the model: ``layers.0.q_proj``)."""
        key = pattern_key(self._rank_res, name)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha_for(self, name: str) -> float:
        key = pattern_key(self._alpha_res, name)
        return self.alpha_pattern[key] if key is not None else self.alpha

    def scale_for(self, name: str) -> float:
        """alpha/r, or alpha/√r with rsLoRA: PEFT's ``scaling`` for the module ``name``."""
        r, alpha = self.rank_for(name), self.alpha_for(name)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def targets(self, name: str) -> bool:
        """Whether the config's ``target_modules`` select the module ``name`` (PEFT's rule: a
        regex must match the whole name; a list entry must equal it or end it after a dot)."""
        if self._exclude_re is not None and self._exclude_re.fullmatch(name):
            return False
        if isinstance(self.exclude_modules, list) and _listed(self.exclude_modules, name):
            return False
        if self._target_re is not None:
            return self._target_re.fullmatch(name) is not None
        if self.target_modules == "all-linear":
            return True
        if isinstance(self.target_modules, list):
            return _listed(self.target_modules, name)
        return False

    def target_entries(self) -> list[str]:
        """The entries of ``target_modules`` as a list (one regex is one entry)."""
        if isinstance(self.target_modules, str):
            return [self.target_modules]
        return list(self.target_modules or [])

    def entry_matches(self, entry: str, name: str) -> bool:
        """Whether one ``target_modules`` entry selects the module ``name``."""
        if self._target_re is not None:
            return self._target_re.fullmatch(name) is not None
        if entry == "all-linear":
            return True
        return name == entry or name.endswith("." + entry)


def _listed(entries: list[str], name: str) -> bool:
    return any(name == e or name.endswith("." + e) for e in entries)


def read_adapter_config(path: Path) -> AdapterConfig:
    """The config at ``path`` (a small regular file), checked; ``AdapterConfigError`` with one
    line when it is missing, too big, not JSON or holds entries of the wrong kind."""
    label = printable(str(path), 200)
    try:
        data = read_small_file(path, MAX_CONFIG_BYTES, "an adapter config")
    except CheckpointError as exc:
        raise AdapterConfigError(str(exc)) from None
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise AdapterConfigError(f"{label}: not UTF-8 text; not an adapter config") from None
    except (ValueError, RecursionError):
        raise AdapterConfigError(f"{label}: not valid JSON") from None
    if not isinstance(raw, dict):
        raise AdapterConfigError(f"{label}: not a JSON object")
    return parse_adapter_config(raw, path)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_adapter_config(raw: dict[str, Any], path: Path) -> AdapterConfig:
    """Check every entry an analysis or a merge reads; the others are left alone."""
    label = printable(str(path), 200)
    where = f"{label}: "
    peft_type = raw.get("peft_type", "LORA")
    if not isinstance(peft_type, str):
        raise AdapterConfigError(f"{where}peft_type is not a string")
    peft_type = printable(peft_type.upper(), 40)
    r = _rank(raw.get("r", 8), where + "r")
    alpha = _number(raw.get("lora_alpha", 8), where + "lora_alpha")
    config = AdapterConfig(path=path, peft_type=peft_type, r=r, alpha=alpha)
    config.use_rslora = _flag(raw, "use_rslora", where)
    config.use_dora = _flag(raw, "use_dora", where)
    config.fan_in_fan_out = _flag(raw, "fan_in_fan_out", where)
    config.target_modules = _names_or_regex(raw.get("target_modules"), where + "target_modules")
    config.exclude_modules = _names_or_regex(raw.get("exclude_modules"), where + "exclude_modules")
    saved = _names_or_regex(raw.get("modules_to_save"), where + "modules_to_save")
    if isinstance(saved, str):
        raise AdapterConfigError(f"{where}modules_to_save is not a list of names")
    config.modules_to_save = saved or []
    if isinstance(config.target_modules, str) and config.target_modules != "all-linear":
        config._target_re = compile_pattern(config.target_modules, where + "target_modules")
    if isinstance(config.exclude_modules, str):
        config._exclude_re = compile_pattern(config.exclude_modules, where + "exclude_modules")
    for key in ("rank_pattern", "alpha_pattern"):
        table = raw.get(key) or {}
        if not isinstance(table, dict):
            raise AdapterConfigError(f"{where}{key} is not a JSON object")
        if len(table) > MAX_ENTRIES:
            raise AdapterConfigError(f"{where}{key} has {len(table):,} entries; refused")
        compiled = {}
        for name, value in table.items():
            _name(name, f"{where}{key}")
            compiled[name] = wrapped(name, f"{where}{key}")
            shown = f"{where}{key}[{printable(name, 60)!r}]"
            if key == "rank_pattern":
                config.rank_pattern[name] = _rank(value, shown)
            else:
                config.alpha_pattern[name] = _number(value, shown)
        if key == "rank_pattern":
            config._rank_res = compiled
        else:
            config._alpha_res = compiled
    base = raw.get("base_model_name_or_path")
    config.base_model = printable(base, 200) if isinstance(base, str) else None
    config.unsupported = [k for k in MERGE_UNSUPPORTED if raw.get(k) not in (None, False, [], {})]
    return config


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise AdapterConfigError(f"{where}{key} is not true or false")
    return value


def _rank(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterConfigError(f"{where} is not a whole number")
    if not 1 <= value <= MAX_RANK:
        raise AdapterConfigError(f"{where} is {value}; a rank must be between 1 and {MAX_RANK:,}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdapterConfigError(f"{where} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise AdapterConfigError(f"{where} is too large") from None
    if not math.isfinite(number) or abs(number) > 1e12:
        raise AdapterConfigError(f"{where} is {number}; not a usable alpha")
    return number


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise AdapterConfigError(f"{where}: an entry that is not a module name")
    return value


def _names_or_regex(value: Any, where: str) -> list[str] | str | None:
    """A list of module names, one regex string, or nothing."""
    if value is None:
        return None
    if isinstance(value, str):
        return _name(value, where)
    if not isinstance(value, list):
        raise AdapterConfigError(f"{where} is neither a list of names nor a pattern")
    if len(value) > MAX_ENTRIES:
        raise AdapterConfigError(f"{where} has {len(value):,} entries; refused")
    return [_name(v, where) for v in value]
