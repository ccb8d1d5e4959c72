"""Checkpoints where they live: ``https://``, ``s3://``, ``gs://`` and ``hf://`` locations read
through fsspec, fetching only the bytes a question needs (headers, the central directory and
pickle of a torch zip, the tensors looked at) through a bounded on-disk cache.

``is_remote`` is all a caller needs before opening; everything else (and fsspec) is imported
only when a remote location is opened.
"""

from __future__ import annotations

from ckpt_gui.core.remote.location import RemotePath, as_location, is_remote, shown

__all__ = ["RemotePath", "as_location", "is_remote", "shown"]
