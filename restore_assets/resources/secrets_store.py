"""Runbook §0/§1: the Secrets store — find the baseline files and decide whether they are usable.

A file is usable when it is a regular file inside the Secrets root (no symlink escaping it),
mode 600 or stricter, non-empty; we stream its sha256 and read the pg_dump version header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.settings import (
    LEGACY_SCHEMA_FILE,
    LEGACY_SEED_FILE,
    MODERN_SCHEMA_FILE,
    Settings,
)

SIDE_FILES = {
    "legacy": (LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE),
    "modernized": (MODERN_SCHEMA_FILE,),
}
FILE_ROLES = {
    LEGACY_SCHEMA_FILE: "Legacy schema (pg_dump --schema-only)",
    LEGACY_SEED_FILE: "Legacy seed (pg_dump --data-only)",
    MODERN_SCHEMA_FILE: "Modernized schema (pg_dump --schema-only)",
}
CHUNK = 1 << 20
_HEADER_LINES = 40
_DUMPED_FROM = re.compile(r"^-- Dumped from database version (\S+)")
_DUMPED_BY = re.compile(r"^-- Dumped by pg_dump version (\S+)")


@dataclass
class SecretFile:
    """What we know about one baseline file; `problems` empty means usable."""

    relpath: str
    path: Path
    present: bool = False
    size: int = 0
    mode: str = ""
    sha256: str = ""
    dumped_from: str | None = None
    dumped_by: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.present and not self.problems

    def shasum_line(self) -> str:
        """The line `shasum -a 256 <relpath>` prints when run from the Secrets root."""
        return f"{self.sha256}  {self.relpath}"

    def as_evidence(self) -> dict[str, object]:
        return {
            "path": self.relpath,
            "sha256": self.sha256,
            "size": self.size,
            "mode": self.mode,
            "dumped_from": self.dumped_from,
            "dumped_by": self.dumped_by,
        }


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class SecretsStore:
    """The Secrets root and the runbook's files in it."""

    def __init__(self, settings: Settings):
        self.root = settings.secrets_dir
        self.cache_path = settings.state_dir / "sha256-cache.json"

    def inspect(self, relpath: str) -> SecretFile:
        path = self.root / relpath
        info = SecretFile(relpath=relpath, path=path)
        if not os.path.lexists(path):
            info.problems.append("missing")
            return info
        info.present = True
        real_root = self.root.resolve()
        real = path.resolve()
        if not _inside(real, real_root):
            info.problems.append(f"resolves outside the Secrets root (to {real}); refused")
            return info
        st = real.stat()
        if not stat.S_ISREG(st.st_mode):
            info.problems.append("not a regular file; refused")
            return info
        info.size = st.st_size
        info.mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if stat.S_IMODE(st.st_mode) & 0o077:
            info.problems.append(
                f"mode {info.mode} is looser than 0600; the runbook requires `chmod 600 {relpath}`"
            )
        if st.st_size == 0:
            info.problems.append("empty file")
            return info
        info.sha256 = self._sha256(real, st)
        info.dumped_from, info.dumped_by = read_dump_header(real)
        return info

    def inspect_side(self, side: str) -> list[SecretFile]:
        return [self.inspect(rel) for rel in SIDE_FILES[side]]

    def _sha256(self, path: Path, st: os.stat_result) -> str:
        """Streamed sha256, cached by (path, size, mtime, inode) so big dumps hash once."""
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        cache = self._load_cache()
        if key in cache:
            return cache[key]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}
        cache[key] = value
        self._save_cache(cache)
        return value

    def _load_cache(self) -> dict[str, str]:
        try:
            return json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save_cache(self, cache: dict[str, str]) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=0))
            tmp.replace(self.cache_path)
        except OSError:
            pass  # a cache we cannot write only costs time


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and missing parents with mode 0700 (mkdir's mode covers only the last)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, writer) -> None:
    """Create `path` with mode 0600 from the start (the runbook's `chmod 600`)."""
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


def read_dump_header(path: Path) -> tuple[str | None, str | None]:
    """`Dumped from database version` and `Dumped by pg_dump version` from a dump's first lines."""
    dumped_from = dumped_by = None
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for _, line in zip(range(_HEADER_LINES), handle, strict=False):
            if m := _DUMPED_FROM.match(line):
                dumped_from = m.group(1)
            elif m := _DUMPED_BY.match(line):
                dumped_by = m.group(1)
    return dumped_from, dumped_by


def ops_request(
    settings: Settings,
    sides: list[str],
    files: list[SecretFile],
    evidence_dir: Path | None,
    now: dt.datetime | None = None,
) -> str:
    """Runbook §0: the request to Ops/DBA naming target, files, purpose, deadline, evidence."""
    now = now or dt.datetime.now(dt.UTC)
    deadline = (now + dt.timedelta(days=2)).strftime("%Y-%m-%d")
    wanted = [f for f in files if not f.usable]
    lines = [
        "To: Ops / DBA",
        "Subject: OpenDolphin DB baseline files needed for Gate #40 (DB restore)",
        "",
        "Target: " + ", ".join(_side_title(settings, s) for s in sides),
        "Files needed (encrypted ZIP, unpack into the Secrets store, then `chmod 600`):",
    ]
    for f in wanted or files:
        reason = "; ".join(f.problems) or "present"
        lines.append(
            f"  - {settings.secrets_dir / f.relpath}  [{FILE_ROLES[f.relpath]}] ({reason})"
        )
    lines += [
        "Purpose: Gate #40 — restore the Legacy/Modernized databases so JMS/CLAIM/TRACE "
        "verification can resume.",
        f"Deadline: {deadline} (UTC)",
        f"Evidence: {evidence_dir or settings.artifacts_dir / 'parity-manual/db-restore'}",
    ]
    return "\n".join(lines) + "\n"


def _side_title(settings: Settings, side: str) -> str:
    target = settings.legacy if side == "legacy" else settings.modernized
    return f"{side.capitalize()} ({target.describe()})"
