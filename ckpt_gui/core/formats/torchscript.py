"""TorchScript archives (``torch.jit.save``): recognised and named.

Loading one means compiling and running TorchScript code from the file, so the reader never
does; the structural view (a code-free unpickler) lists its tensors where it can.
"""

from __future__ import annotations

import zipfile
from pathlib import Path


def describe(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        code = [n for n in zf.namelist() if "/code/" in n and n.endswith(".py")]
    return f"a TorchScript archive ({len(code)} code files)"
