"""Decide what a path holds from its content (magic bytes, zip entries, folder contents), never
from its extension, and say what a non-checkpoint looks like instead.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

from ckpt_gui.core.errors import CorruptError, NotACheckpointError, NotFoundError
from ckpt_gui.core.safety.filecheck import describe_content, open_regular_file, printable, sniff
from ckpt_gui.core.safety.scan import LEGACY_MAGIC

# How a legacy (pre-1.6) torch.save file starts: its magic number, pickled (protocol 2).
LEGACY_PREFIX = pickle.dumps(LEGACY_MAGIC, protocol=2)[:-1]
INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json", ".pt.index.json")
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
MiB = 2**20
MAX_INDEX_BYTES = 64 * MiB  # a real index.json is a few hundred KiB


def detect(path: Path) -> str:
    """The format name (as in docs/cli.md) of ``path``; raises a CheckpointError when it is none."""
    fmt, opened = detect_and_open(path)
    if opened is not None:
        opened[0].close()
    return fmt


def detect_and_open(path: Path) -> tuple[str, tuple[BinaryIO, int] | None]:
    """``detect``, and for a checkpoint file the file it read, open (``(file, size)``, for the
    caller to close): its scan then reads the same open file instead of opening it again."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise NotFoundError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        return _detect_folder(path), None
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or a device could block forever; refuse before touching it.
        raise NotACheckpointError(f"{path}: not a regular file")
    if path.name.endswith(INDEX_SUFFIXES):
        return _detect_index(path), None
    if st.st_size == 0:
        raise NotACheckpointError(f"{path}: the file is empty")
    fp, size = open_regular_file(path)  # non-blocking, re-checked: a swapped-in FIFO can't hang
    try:
        return detect_stream(path, fp, size), (fp, size)
    except BaseException:
        fp.close()
        raise


def detect_stream(path: Path | str, fp: BinaryIO, size: int) -> str:
    """The format of the file ``fp`` (``size`` bytes, read from where it is), which ``path``
    names in errors: a local file, or a remote one read through ranges."""
    head = fp.read(512)
    kind = sniff(head, size)  # the scan's rules: zip, then tar (by checksum, as torch.load)
    if kind == "zip":
        return _detect_zip(path, fp)
    if kind == "tar":
        return "torch-tar"
    if head.startswith(LEGACY_PREFIX):
        return "torch-legacy"
    if head.startswith(b"GGUF"):  # llama.cpp's format, read by the gguf package
        return "gguf"
    # A header longer than the file is still a safetensors file: a truncated one, which the
    # reader then says.
    if kind == "safetensors" or _looks_like_safetensors(head, size):
        return "safetensors"
    raise NotACheckpointError(f"{path}: not a checkpoint; it looks like {describe_content(head)}")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= n


def _detect_zip(path: Path | str, fp: BinaryIO) -> str:
    try:
        with zipfile.ZipFile(fp) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptError(f"{path}: truncated or damaged zip archive ({exc})") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch-zip"
    raise NotACheckpointError(f"{path}: a zip archive without a pickle, not a torch.save file")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a file name alone, so that ``folder / name`` stays in ``folder``: no
    separator, not absolute, not ``.`` or ``..``, no NUL."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        return False
    separators = {"/", "\\", os.sep, os.altsep or os.sep}
    return not any(s in name for s in separators) and "\0" not in name and not os.path.isabs(name)


def read_small_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file that should be small (an index, DCP metadata): refused from
    its size before reading, and never read past ``limit`` (a device or a growing file)."""
    fp, size = open_regular_file(path)
    with fp:
        try:
            data = fp.read(limit + 1) if size <= limit else b""
        except OSError as exc:
            raise CorruptError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size > limit or len(data) > limit:
        raise CorruptError(
            f"{path}: {what} of {max(size, len(data)) / MiB:,.0f} MiB, over the "
            f"{limit / MiB:,.0f} MiB limit; refused"
        )
    return data


def read_index(path: Path) -> dict[str, str]:
    """The ``weight_map`` of a Hugging Face index file, every shard a plain file name."""
    return parse_index(path, read_small_file(path, MAX_INDEX_BYTES, "an index file"))


def parse_index(path: Path | str, data: bytes) -> dict[str, str]:
    """``read_index`` of an index file's bytes (``path`` names it in errors)."""
    try:
        index = json.loads(data.decode("utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise CorruptError(
            f"{path}: not a valid sharded-checkpoint index (no weight_map)"
        ) from None
    for shard in weight_map.values():
        if not is_plain_name(shard):
            raise CorruptError(
                f"{path}: the index names shard {printable(shard)!r}, which is not a file name "
                "in the folder; refused"
            )
    return weight_map


def _detect_index(path: Path) -> str:
    files = set(read_index(path).values())
    if files and all(f.endswith(".safetensors") for f in files):
        return "safetensors-sharded"
    return "torch-sharded"


def find_index(folder: Path) -> Path | None:
    """The Hugging Face index file in ``folder``, preferring safetensors."""
    candidates = sorted(p for p in folder.iterdir() if p.name.endswith(INDEX_SUFFIXES))
    candidates.sort(key=lambda p: not p.name.endswith(".safetensors.index.json"))
    return candidates[0] if candidates else None


def _detect_folder(path: Path) -> str:
    # Imported here: folders builds on this module's helpers.
    from ckpt_gui.core.formats.folders import folder_layout

    return folder_layout(path).format
