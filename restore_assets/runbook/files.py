"""Private files: dumps and evidence are written mode 0600 from the start, hashed in one pass."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Streamed sha256 (dumps are gigabytes: never read whole)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolves_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with `~` expanded and every link followed, is `root` or below it: the one
    check that a Secrets file, a dump written or a folder on the way stays in its root."""
    return path.expanduser().resolve().is_relative_to(root.expanduser().resolve())


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and missing parents with mode 0700 (mkdir's mode covers only the last)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Create `path` with mode 0600 from the start (the runbook's `chmod 600`), atomically."""
    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            writer(out)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_private(path: Path, text: str) -> None:
    """Append to a log that is mode 0600 from its first line (evidence names Secrets files)."""
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as log:
        log.write(text)
