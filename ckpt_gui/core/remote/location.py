"""A remote location, named by its URL: told apart from a local path by its scheme, and shown
without the credentials or signatures a URL can carry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("http", "https", "s3", "gs", "gcs", "hf")


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL of a supported scheme (``https://…``, ``s3://…``, …)."""
    if isinstance(path, RemotePath):
        return True
    text = os.fspath(path) if not isinstance(path, str) else path
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def as_location(path: str | os.PathLike[str] | RemotePath) -> Path:
    """``path`` as the window keeps it: a ``Path``, or for a URL a ``RemotePath``, typed as a
    ``Path`` because it answers all the window asks of one (``name``, ``parent``, ``parts``,
    ``resolve``, ``is_dir``, ``str``); what would touch the disk checks ``is_remote`` first.
    (A URL must arrive as a string: ``Path`` would fold its ``//``.)"""
    if isinstance(path, RemotePath):
        return cast(Path, path)
    return cast(Path, RemotePath(os.fspath(path))) if is_remote(path) else Path(path)


def shown(url: str) -> str:
    """``url`` as it may be printed: no user name or password, no query (signed URLs carry
    their signature there) and no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class RemotePath:
    """Where a remote checkpoint is: what a local ``Path`` gives the rest of the program (its
    name, its folder, how it prints), for a URL. ``str()`` is the shown URL (``shown``); the
    full URL, credentials included, stays in ``url`` for the fetching code alone."""

    def __init__(self, url: str, *, folder: bool = False) -> None:
        self.url = url.rstrip("/") if url.rstrip("/").count("/") > 2 else url
        self.folder = folder

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.rstrip("/").rpartition("/")[2]

    @property
    def parts(self) -> tuple[str, ...]:
        """``("https://host", "folder", "model.safetensors")``, as ``Path.parts`` splits."""
        split = urlsplit(self.url)
        top = f"{split.scheme}://{split.hostname or ''}"
        return (top, *[p for p in split.path.split("/") if p])

    @property
    def suffix(self) -> str:
        name = self.name
        return name[name.rfind(".") :] if "." in name.lstrip(".") else ""

    @property
    def stem(self) -> str:
        return self.name[: len(self.name) - len(self.suffix)]

    @property
    def parent(self) -> RemotePath:
        parts = urlsplit(self.url)
        path = parts.path.rstrip("/").rpartition("/")[0]
        return RemotePath(urlunsplit(parts._replace(path=path)), folder=True)

    def __truediv__(self, name: str) -> RemotePath:
        parts = urlsplit(self.url)
        return RemotePath(urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name)))

    def is_dir(self) -> bool:
        return self.folder

    def is_file(self) -> bool:
        return not self.folder

    def exists(self) -> bool:
        return True  # it was opened

    def resolve(self) -> RemotePath:
        return self

    def __str__(self) -> str:
        return shown(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)
