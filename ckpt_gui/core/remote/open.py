"""``open_remote``: a checkpoint at a URL as the same tree a local one gives, from the few bytes
that describe it. safetensors files and sharded folders: their headers (and index). torch zip
files: the central directory and ``data.pkl``, scanned like any local pickle and read by
torch's own ``weights_only`` loader under a fake-tensor mode, which builds no data; each tensor
then fetches its own bytes when loaded. Other formats must be downloaded first.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import (
    CheckpointError,
    CorruptError,
    NotACheckpointError,
    UnsafeError,
    UnsupportedFormatError,
)
from ckpt_gui.core.formats import safetensors_file
from ckpt_gui.core.formats.detect import INDEX_SUFFIXES, MAX_INDEX_BYTES, detect_stream, parse_index
from ckpt_gui.core.formats.folders import FolderCheckpoint
from ckpt_gui.core.reader import flat_root
from ckpt_gui.core.remote.location import RemotePath, shown
from ckpt_gui.core.remote.store import Fetch, RemoteError, RemoteFile, call, filesystem
from ckpt_gui.core.tree import Node, TensorInfo, dtype_from_name
from ckpt_gui.core.units import human_bytes

if TYPE_CHECKING:
    import torch

HEAD = 64 << 10  # fetched first: the start of the file, which holds most headers whole
CONCURRENT = 16  # requests in flight when a folder's shards are described


def open_remote(url: str, *, trust: bool = False) -> Checkpoint:
    """The checkpoint at ``url`` (a file, or a folder of shards). Raises a ``CheckpointError``
    with one line for anything that cannot be read (and for what must be downloaded)."""
    fs, path = filesystem(url)
    info = call(url, "opening", fs.info, path)
    if info.get("type") == "directory" or url.endswith("/"):
        return _open_folder(url.rstrip("/"), fs, path)
    if url.endswith(INDEX_SUFFIXES):
        parent = RemotePath(url).parent
        return _open_folder(parent.url, fs, path.rpartition("/")[0], index=path)
    remote = RemoteFile(url, info=info)
    if remote.size == 0:
        raise NotACheckpointError(f"{shown(url)}: the file is empty")
    head = remote.read(0, HEAD)
    fmt = detect_stream(shown(url), remote.reader(), remote.size)
    if fmt == "safetensors":
        entries, metadata = _header(remote, head)
        ckpt = _checkpoint(RemotePath(url), fmt, flat_root(_infos(remote, entries)), remote)
        if metadata:
            ckpt.notes.append("metadata: " + ", ".join(f"{k}={v}" for k, v in metadata.items()))
        return ckpt
    if fmt == "torch-zip" and not trust:
        return _open_torch_zip(remote)
    if fmt == "gguf":
        return _open_gguf(remote)
    why = "a real load (--trust)" if fmt == "torch-zip" else f"a {fmt} file"
    raise UnsupportedFormatError(
        f"{shown(url)}: {why} needs the whole file ({human_bytes(remote.size)}); "
        "download it and open the copy"
    )


def _header(remote: RemoteFile, head: bytes) -> tuple[list[Any], dict[str, str]]:
    label = shown(remote.url)
    n = safetensors_file.header_length(label, head, remote.size)
    text = head[8 : 8 + n] if len(head) >= 8 + n else remote.read(8, 8 + n)
    return safetensors_file.parse_header(label, text, n, remote.size)


class _Fetched:
    """What ``safetensors_file.tensor_infos`` reads tensors through, as from a ``MappedFile``:
    here each read fetches its range (one request for many tiny tensors' bytes at once)."""

    def __init__(self, remote: RemoteFile) -> None:
        self.remote = remote

    def tensor(self, name: str, shape: tuple[int, ...], begin: int, end: int) -> torch.Tensor:
        import torch

        data = self.byte_view(begin, end)
        if data.numel() == 0:
            return torch.empty(shape, dtype=dtype_from_name(name))
        return _as(data, dtype_from_name(name)).view(shape)

    def byte_view(self, begin: int, end: int) -> torch.Tensor:
        return placed(self.remote.read(begin, end), begin)


_PAGE = 4096


def _as(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bytes as ``dtype`` elements (copied where they do not start on an element boundary, as
    a misaligned local file's are)."""
    if data.storage_offset() % dtype.itemsize:
        data = data.clone()
    return data.view(dtype)


def placed(data: bytes, offset: int) -> torch.Tensor:
    """``data`` (from file offset ``offset``) as a uint8 tensor at the address alignment a
    memory map of the file would give it: reductions take the same path through the vector
    units, so statistics come out the same to the last bit as for the local file."""
    import torch

    if not data:
        return torch.empty(0, dtype=torch.uint8)
    memory = torch.empty(len(data) + _PAGE, dtype=torch.uint8)
    start = (offset - memory.data_ptr()) % _PAGE
    out = memory[start : start + len(data)]
    out.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return out


def _infos(remote: RemoteFile, entries: list[Any]) -> list[tuple[str, TensorInfo]]:
    label = shown(remote.url)
    infos = safetensors_file.tensor_infos(label, entries, _Fetched(remote))
    for e in entries:
        infos[e.name].fetch = Fetch(remote, e.begin, e.end)
    return list(infos.items())


def _checkpoint(
    where: RemotePath, fmt: str, root: Node, *remotes: RemoteFile, **extra: Any
) -> Checkpoint:
    size = sum(r.size for r in remotes)
    ckpt = Checkpoint(path=where, format=fmt, root=root, size_on_disk=size, **extra)  # type: ignore[arg-type]
    ckpt.notes.append(f"remote: {shown(where.url)} (bytes fetched as needed)")
    return ckpt


def remote_config(where: RemotePath) -> dict[str, Any] | None:
    """The config.json of a remote checkpoint (in its folder, or beside its file), or None
    when there is none or it is not a small JSON object; fetched only when asked for."""
    import json

    folder = where if where.is_dir() else where.parent
    try:
        remote = RemoteFile((folder / "config.json").url)
        if remote.size > MAX_INDEX_BYTES:
            return None
        config = json.loads(remote.read(0, remote.size))
    except (CheckpointError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def _open_folder(url: str, fs: Any, path: str, index: str | None = None) -> Checkpoint:
    """A folder of safetensors shards: its index (or every ``.safetensors`` file in it), then
    every shard's header, fetched concurrently."""
    listing = call(url, "listing the folder", fs.ls, path, detail=True)
    files = {str(item["name"]).rstrip("/").rpartition("/")[2]: item for item in listing}
    names = [n for n in files if n.endswith(".safetensors.index.json")] if index is None else []
    index_name = index.rpartition("/")[2] if index else (names[0] if names else None)
    where = RemotePath(url, folder=True)
    if index_name is not None:
        index_file = RemoteFile(f"{url}/{index_name}", info=files.get(index_name))
        if index_file.size > MAX_INDEX_BYTES:
            raise CorruptError(f"{shown(index_file.url)}: an index file over the limit; refused")
        weight_map = parse_index(shown(index_file.url), index_file.read(0, index_file.size))
        shards = list(dict.fromkeys(weight_map.values()))
    else:
        shards = sorted(n for n in files if n.endswith(".safetensors"))
        weight_map = None
    if not shards:
        raise NotACheckpointError(f"{shown(url)}: no safetensors files or index in this folder")
    if not all(s.endswith(".safetensors") for s in shards):
        raise UnsupportedFormatError(
            f"{shown(url)}: shards other than safetensors must be downloaded to be read"
        )
    missing = [s for s in shards if s not in files]
    if missing:
        raise CorruptError(f"{shown(url)}: shard {missing[0]} is missing")

    def describe(shard: str) -> tuple[RemoteFile, list[tuple[str, TensorInfo]]]:
        remote = RemoteFile(f"{url}/{shard}", info=files[shard])
        entries, _ = _header(remote, remote.read(0, HEAD))
        return remote, _infos(remote, entries)

    with ThreadPoolExecutor(CONCURRENT, thread_name_prefix="remote-headers") as pool:
        described = list(pool.map(describe, shards))
    infos = {key: info for _, items in described for key, info in items}
    keys = list(weight_map) if weight_map is not None else list(infos)
    absent = [k for k in keys if k not in infos]
    if absent:
        raise CorruptError(f"{shown(url)}: {absent[0]!r} is in the index but in no shard")
    root = flat_root([(k, infos[k]) for k in keys])
    label = f"safetensors ×{len(shards)} shard{'s' * (len(shards) != 1)}"
    fmt = "safetensors-sharded" if len(shards) > 1 or index_name else "safetensors"
    ckpt = FolderCheckpoint(
        path=where,  # type: ignore[arg-type]
        format=fmt,
        root=root,
        size_on_disk=sum(r.size for r, _ in described),
        format_label=label,
    )
    ckpt.notes.append(f"remote: {shown(url)} (bytes fetched as needed)")
    ckpt.notes.append(f"{len(shards)} shard{'s' * (len(shards) != 1)}")
    return ckpt


MAX_GGUF_HEADER = 512 << 20  # a vocabulary of millions of tokens stays well under this


def _open_gguf(remote: RemoteFile) -> Checkpoint:
    """The gguf package's reader over the cache's copy of the file, in which only the header is
    fetched (more of it while the header turns out longer). It reads ranges through a memory
    map, so every tensor fetches its bytes before anything reads them, and the copy is kept
    out of cache eviction while the checkpoint is open."""
    from ckpt_gui.core.formats import gguf_file

    label, have = shown(remote.url), min(remote.size, HEAD)
    while True:
        remote.read(0, have)
        header = _gguf_header(remote.cached.data_path)
        end = header[0] if header is not None else None
        if header is not None and header[0] <= have:  # every byte the parse read was fetched
            spans = header[1]
            break
        if have >= min(remote.size, MAX_GGUF_HEADER):
            raise CorruptError(f"{label}: damaged GGUF file (its header could not be read)")
        have = min(remote.size, MAX_GGUF_HEADER, max(2 * have, end or 0))
    remote.cached.pinned = True
    ckpt = gguf_file.open_gguf(remote.cached.data_path)
    for node in ckpt.root.tensors():
        if node.key in spans and node.tensor is not None and node.tensor.loader is not None:
            fetch = Fetch(remote, *spans[node.key])
            node.tensor.fetch = fetch
            node.tensor.loader = partial(_after, fetch, node.tensor.loader)
    for lt in ckpt.logical:
        fetch = Fetch(remote, *spans[lt.parts[0]])
        lt.read = partial(_after, fetch, lt.read)
        if lt.take is not None:
            lt.take = partial(_after, fetch, lt.take)
    ckpt.path = RemotePath(remote.url)  # type: ignore[assignment]
    ckpt.notes.append(f"remote: {label} (the header fetched; tensors as needed)")
    return ckpt


def _gguf_header(path: Any) -> tuple[int, dict[str, tuple[int, int]]] | None:
    """Where a GGUF file's tensor data starts, as its header says, and each tensor's byte
    range; None when the header cannot be parsed (yet)."""
    from ckpt_gui.core.formats import gguf_file

    try:
        reader = gguf_file._reader(path)
    except CheckpointError:
        return None
    try:
        spans = {
            t.name: (int(t.data_offset), int(t.data_offset + t.n_bytes)) for t in reader.tensors
        }
        return int(reader.data_offset), spans
    finally:
        gguf_file._close(reader)


def _after(fetch: Fetch, read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)`` once ``fetch`` has brought every byte it may read."""
    for _ in fetch():
        pass
    return read(*args)


def _open_torch_zip(remote: RemoteFile) -> Checkpoint:
    """Scanned like a local file; then torch's ``weights_only`` loader under a fake-tensor
    mode: tensors with their dtype, shape, strides, saved device and the file offset of their
    storage, and no data read."""
    import torch

    from ckpt_gui.core.build import build_tree
    from ckpt_gui.core.formats.pickled import check_allocations
    from ckpt_gui.core.formats.torch_file import _refusal
    from ckpt_gui.core.safety.scan import MAX_SAFE_TUPLE_DEPTH, scan_file

    label = shown(remote.url)
    reader = remote.reader()
    report = scan_file(label, opened=(reader, remote.size))
    if report.max_tuple_depth > MAX_SAFE_TUPLE_DEPTH:
        raise CorruptError(f"{label}: tuples nested {report.max_tuple_depth} deep; refused")
    check_allocations(label, "torch-zip", report, on_disk=remote.size)
    from torch._subclasses.fake_tensor import FakeTensorMode

    reader.seek(0)
    try:
        with FakeTensorMode():
            obj = torch.load(reader, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal = _refusal(label, exc)  # type: ignore[arg-type]
        if not isinstance(refusal, UnsafeError):
            raise refusal from None
        return _structural(remote, reader, report)
    except RemoteError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever torch trips over in a damaged file
        raise CorruptError(f"{label}: truncated or damaged ({type(exc).__name__})") from None
    root = build_tree(obj, partial(_describe_fake, remote))
    return _checkpoint(
        RemotePath(remote.url), "torch-zip", root, remote, view="weights_only", scan=report
    )


def _structural(remote: RemoteFile, reader: Any, report: Any) -> Checkpoint:
    """What torch's safe loader refused, in the structural view, as for a local file: every
    record but the tensor data (the pickles, the byte order) is fetched into the cache's sparse
    copy, which our unpickler maps; each tensor, a view of that map, fetches its bytes before
    it is read, and the copy is kept out of eviction while open."""
    import zipfile

    from ckpt_gui.core.formats.pickled import structural_checkpoint

    with zipfile.ZipFile(reader) as archive:
        for record in archive.infolist():
            if "/data/" in f"/{record.filename}":
                continue
            local = remote.read(record.header_offset, record.header_offset + 30)
            start = record.header_offset + 30 + int.from_bytes(local[26:28], "little")
            start += int.from_bytes(local[28:30], "little")
            remote.read(record.header_offset, start + record.compress_size)
    remote.cached.pinned = True
    ckpt = structural_checkpoint(remote.cached.data_path, "torch-zip", report)
    for node in ckpt.root.tensors():
        info = node.tensor
        if info is None or info.loader is None or info.no_data or info.layout != "strided":
            continue
        t = info.loader()
        if t.numel() == 0:
            continue
        size = t.element_size()
        begin = t.data_ptr() - t.untyped_storage().data_ptr()  # a view of the whole file
        end = begin + (sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) + 1) * size
        if 0 <= begin and end <= remote.size and t.untyped_storage().nbytes() == remote.size:
            fetch = Fetch(remote, begin, end)
            info.fetch = fetch
            info.loader = partial(_after, fetch, info.loader)
    ckpt.path = RemotePath(remote.url)  # type: ignore[assignment]
    ckpt.notes.append(f"remote: {shown(remote.url)} (its pickle fetched; tensors as needed)")
    return ckpt


def _describe_fake(remote: RemoteFile, t: Any) -> TensorInfo:
    storage = t.untyped_storage()
    offset = getattr(storage, "_checkpoint_offset", None)
    if offset is None:
        raise UnsupportedFormatError(
            f"{shown(remote.url)}: this torch does not say where a lazily loaded tensor's bytes "
            "are; download the file"
        )
    dtype = str(t.dtype).removeprefix("torch.")
    shape, stride, first = tuple(t.shape), tuple(t.stride()), int(t.storage_offset())
    begin, end = _span(offset, dtype_from_name(dtype).itemsize, shape, stride, first)
    return TensorInfo(
        dtype=dtype,
        shape=shape,
        stride=stride,
        device=str(getattr(storage, "_fake_device", "cpu")),
        storage_id=offset,
        storage_offset=first,
        loader=partial(_fetch_view, remote, offset, storage.nbytes(), dtype, shape, stride, first),
        fetch=Fetch(remote, begin, end),
    )


def _span(
    offset: int, size: int, shape: tuple[int, ...], stride: tuple[int, ...], first: int
) -> tuple[int, int]:
    """The file range of a view's elements, ``first`` to its last, in a storage at ``offset``."""
    last = first + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else first - 1
    return offset + first * size, offset + (last + 1) * size


def _fetch_view(
    remote: RemoteFile,
    offset: int,
    nbytes: int,
    dtype: str,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
    first: int,
) -> torch.Tensor:
    """A tensor viewing part of a storage that lies at ``offset``: only the elements it spans
    are fetched."""
    import torch

    torch_dtype = dtype_from_name(dtype)
    begin, end = _span(offset, torch_dtype.itemsize, shape, stride, first)
    if end > offset + nbytes:
        raise CorruptError(f"{shown(remote.url)}: a tensor reaches past its storage")
    data = placed(remote.read(begin, end), begin) if end > begin else None
    if data is None or data.numel() == 0:
        return torch.empty(shape, dtype=torch_dtype)
    flat = _as(data, torch_dtype)
    return flat.as_strided(shape, stride, flat.storage_offset())
