"""The regular expressions a PEFT config may hold (``target_modules`` as a string, the keys of
``rank_pattern`` and ``alpha_pattern``), compiled only when they cannot run away.

Python's ``re`` backtracks without a time limit, and a config is a file from anywhere: a pattern
like ``(a+)+$`` would hang the program on a long module name. A pattern is refused when a
repetition holds another repetition or an alternation (the exponential cases), when it refers
back to a group, or when it has more unbounded repetitions than any real config needs.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11 and later
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse  # type: ignore[no-redef]

from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.safety.filecheck import printable

MAX_PATTERN_CHARS = 512
MAX_UNBOUNDED = 3  # ``.*\.(q_proj|v_proj)`` has one; ``^(?!.*vision).*\.layers\.\d+\.q_proj`` three
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


class AdapterConfigError(CheckpointError):
    """The adapter's config cannot be used; the message says which entry and why."""


def compile_pattern(pattern: str, where: str) -> re.Pattern[str]:
    """``pattern`` compiled, or an ``AdapterConfigError`` naming ``where`` it came from."""
    shown = printable(pattern, 60)
    if len(pattern) > MAX_PATTERN_CHARS:
        raise AdapterConfigError(
            f"{where}: a pattern of {len(pattern):,} characters; refused (at most "
            f"{MAX_PATTERN_CHARS})"
        )
    try:
        compiled = re.compile(pattern)
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        raise AdapterConfigError(f"{where}: {shown!r} is not a valid regular expression") from None
    why = _runaway(parsed)
    if why:
        raise AdapterConfigError(f"{where}: the pattern {shown!r} {why}; refused")
    return compiled


def _runaway(parsed: Any) -> str | None:
    """Why matching ``parsed`` could take exponential (or high polynomial) time, or None."""
    unbounded = 0

    def walk(items: Any, in_repeat: bool) -> str | None:
        nonlocal unbounded
        for op, arg in items:
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "refers back to a group"
            if name in _REPEATS:
                low, high, body = arg
                many = high is sre_parse.MAXREPEAT or high > 1
                if many and in_repeat:
                    return "repeats a repetition"
                if high is sre_parse.MAXREPEAT:
                    unbounded += 1
                    if unbounded > MAX_UNBOUNDED:
                        return f"has more than {MAX_UNBOUNDED} unbounded repetitions"
                why = walk(body, in_repeat or many)
                if why:
                    return why
            elif name == "BRANCH":
                if in_repeat:
                    return "repeats an alternation"
                for branch in arg[1]:
                    why = walk(branch, in_repeat)
                    if why:
                        return why
            elif name == "SUBPATTERN":
                why = walk(arg[-1], in_repeat)
                if why:
                    return why
            elif name in ("ASSERT", "ASSERT_NOT"):
                why = walk(arg[1], in_repeat)
                if why:
                    return why
            elif name == "ATOMIC_GROUP":
                why = walk(arg, in_repeat)
                if why:
                    return why
        return None

    return walk(parsed, False)


def pattern_key(patterns: dict[str, re.Pattern[str]], name: str) -> str | None:
    """The key of ``rank_pattern``/``alpha_pattern`` that applies to the module ``name``, the
    way PEFT's ``get_pattern_key`` chooses it: the first key whose pattern matches the end of
    the name at a component boundary (``(.*\\.)?(KEY)$``)."""
    for key, compiled in patterns.items():
        if compiled.match(name):
            return key
    return None


def wrapped(key: str, where: str) -> re.Pattern[str]:
    """A ``rank_pattern``/``alpha_pattern`` key compiled as PEFT applies it."""
    compile_pattern(key, where)  # the key alone must pass the checks
    return re.compile(rf"(.*\.)?({key})$")
