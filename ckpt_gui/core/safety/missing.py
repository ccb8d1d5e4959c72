"""Why a class a checkpoint names is not available here, in words for the user.

Only the top-level package is looked up (``importlib.util.find_spec`` of a top-level name finds
it without importing it), so asking never runs any code.
"""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether the top-level package of ``module`` can be found (it is not imported)."""
    top = module.split(".", 1)[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def unavailable(qualname: str) -> str:
    """What follows "..., which" for a class or function the file names: ``is not installed``,
    ``was defined in the script that saved the file``, or ``ckpt-gui will not import``."""
    module = qualname.rsplit(".", 1)[0] if "." in qualname else qualname
    if module == "__main__" or module.startswith("__main__."):
        return "was defined in the script that saved the file"
    if not installed(module):
        return "is not installed"
    return "ckpt-gui does not import from a file you have not trusted"
