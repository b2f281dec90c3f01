"""Atomic file writes and safetensors checkpoints.

Every file seqlab writes goes through `atomic_write`: the bytes land in a temporary file in the
same folder, are flushed to disk, and then renamed over the target. A crash leaves either the old
file or the new one, never half of one.

Checkpoints are safetensors files. Their string metadata carries the JSON that describes them
(format version, family, config, vocabulary), so one file is enough to rebuild a model. Nothing
is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from seqlab.errors import SeqlabError

FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SeqlabError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SeqlabError(f"{path}: expected a JSON file, got unreadable content ({e})") from None


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor | np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Save tensors (torch or numpy) plus JSON-serialisable `meta` to one safetensors file."""
    from safetensors.torch import save

    flat = {
        k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
        .detach()
        .contiguous()
        .cpu()
        for k, v in tensors.items()
    }
    header = {"format_version": str(FORMAT_VERSION)}
    header.update({k: json.dumps(v) for k, v in meta.items()})
    atomic_write(path, save(flat, metadata=header))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors checkpoint; a missing, corrupt or truncated file is a `SeqlabError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except Exception as e:  # safetensors raises several exception types for damaged files
        raise SeqlabError(
            f"{path}: expected a safetensors checkpoint, got a corrupt or truncated file ({e})"
        ) from None
    version = raw_meta.pop("format_version", None)
    if version != str(FORMAT_VERSION):
        raise SeqlabError(
            f"{path}: expected checkpoint format version {FORMAT_VERSION}, got {version!r}"
        )
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError as e:
        raise SeqlabError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    return tensors, meta
