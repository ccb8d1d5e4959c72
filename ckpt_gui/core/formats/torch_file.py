"""``torch.save`` files (zip and legacy) loaded with ``weights_only=True``.

Zip files are memory-mapped (``mmap=True``), so opening costs time in proportion to the number of
tensors, not their bytes. A ``map_location`` callback keeps every tensor on the CPU while
recording the device each storage was saved on.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ckpt_gui.core.errors import CorruptError, UnsafeError, UnsupportedFormatError, first_line


def load_torch_file(path: Path, *, mmap: bool, trust: bool = False) -> tuple[Any, dict[int, str]]:
    """The saved object with CPU tensors, and a map from storage data pointer to saved device.

    ``trust=True`` is a real unpickling that can run code from the file: only ever after the
    user said so (``--trust`` or the trust dialog), never as a fallback.
    """
    locations: dict[int, str] = {}

    def to_cpu(storage: Any, location: str) -> Any:
        locations[storage.data_ptr()] = location
        return storage

    try:
        # weights_only=True is passed explicitly, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot
        # weaken it (torch only honours that variable when the argument is left unset).
        obj = torch.load(path, map_location=to_cpu, weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except (ImportError, AttributeError) as exc:
        missing = _missing(exc) if trust else None
        if missing is None:
            raise CorruptError(f"{path}: truncated or damaged ({first_line(exc)})") from None
        raise UnsupportedFormatError(
            f"{path}: a real load needs {missing}; open it without --trust to see it in the "
            "structural view"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever torch trips over in a damaged file
        raise CorruptError(f"{path}: truncated or damaged ({first_line(exc)})") from None
    return obj, locations


def _missing(exc: BaseException) -> str | None:
    """What a real load could not find: a module that is not installed, or a class that the
    saving script defined (``__main__.Net``) and this process does not have."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"module {exc.name!r}, which is not installed"
    text = str(exc)
    if isinstance(exc, AttributeError) and text.startswith("Can't get attribute "):
        name = text.removeprefix("Can't get attribute ").split(" on ")[0].strip("'")
        module = text.partition(" on <module ")[2].split(" ")[0].strip("'")
        # The saving script's classes live in its __main__; whatever __main__ is here lacks them.
        script = module == "__main__" or module.endswith(".__main__")
        where = "the script that saved the file" if script else f"module {module!r}"
        return f"{name!r} from {where}, which is not defined here"
    return None


def _refusal(path: Path, exc: Exception) -> Exception:
    text = str(exc)
    if "Weights only load failed" in text or "Unsupported global" in text or "GLOBAL" in text:
        culprit = _culprit(text)
        return UnsafeError(f"{path}: loading it would run code from the file{culprit}; refused")
    if "legacy .tar format" in text:
        return UnsupportedFormatError(f"{path}: a pre-1.6 tar-format torch file; not supported")
    return CorruptError(f"{path}: truncated or damaged ({first_line(exc)})")


def _culprit(text: str) -> str:
    for marker in ("Unsupported global: GLOBAL ", "Unsupported operand ", "GLOBAL "):
        i = text.find(marker)
        if i >= 0:
            name = text[i + len(marker) :].split()[0].rstrip(".,")
            return f" (it references {name})"
    return ""
