"""Runbook §0/§1: find the baseline files in the Secrets store and decide whether they are usable.

A file is usable when it is a regular file inside the Secrets root (reached from the root's
descriptor, no link followed on the way: a link there is refused wherever it leads), mode
600 or stricter, non-empty, and a whole pg_dump file of the kind its slot expects (header and
"dump complete" footer present; schema dumps hold no table data, the seed no table definitions).
One streamed pass gives the sha256, those facts and the psql scan of the same bytes, cached by
inode, size, mtime and ctime: a restore then reads each file once more only, to feed psql (which
checks the fed bytes against this sha256).
Intake vets every side of a run before any side touches a database: a missing, loose, truncated
or misplaced file stops everything with a request to Ops.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from restore_assets.errors import SecretsBlocked
from restore_assets.files import (
    Identity,
    NotSafe,
    lstat_below,
    open_below,
    private_folder,
    read_private,
)
from restore_assets.runbook.baseline_files import (
    SIDE_FILES,
    DumpFacts,
    SecretFile,
    read_dump,
)
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.ops_request import ops_request
from restore_assets.settings import SIDES, Paths, Settings


def _refusal(path: Path, exc: NotSafe) -> str:
    """Why a baseline file is refused: it, or a folder on the way to it, is a link (or a FIFO,
    a device): never followed, whether it leads outside the Secrets root or not."""
    if exc.filename == str(path):
        return (
            f"{exc.strerror} (a baseline file is read only as a regular file, never through "
            "a link: one may lead outside the Secrets root)"
        )
    return (
        f"not a regular file: {exc.filename} on the way is a link or not a folder; refused "
        "(never followed: a link may lead outside the Secrets root)"
    )


def _cache_key(path: Path, st: os.stat_result) -> str:
    return f"{path}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


class SecretsStore:
    """The Secrets root and the runbook's files in it."""

    def __init__(self, paths: Paths):
        self.root = paths.secrets_dir
        self.cache_path = paths.state_dir / "sha256-cache.json"

    def inspect(self, relpath: str) -> SecretFile:
        path = self.root / relpath
        info = SecretFile(relpath=relpath, path=path)
        try:  # by descriptor from the root, no link followed: the inode the facts are read from
            handle = open_below(self.root, relpath)
        except FileNotFoundError:
            info.problems.append("missing")
            return info
        except NotSafe as exc:
            info.present = True
            info.problems.append(_refusal(path, exc))
            return info
        info.present = True
        with handle:
            st = os.fstat(handle.fileno())
            info.identity = Identity.of(st)
            info.size = st.st_size
            info.mode = f"{stat.S_IMODE(st.st_mode):04o}"
            if stat.S_IMODE(st.st_mode) & 0o077:
                info.problems.append(
                    f"mode {info.mode} is looser than 0600; the runbook requires "
                    f"`chmod 600 {relpath}`"
                )
            if st.st_size == 0:
                info.problems.append("empty file")
                return info
            facts = self._facts(path, st, handle)
        info.sha256, info.dumped_from, info.dumped_by, info.scan = (
            facts.sha256,
            facts.dumped_from,
            facts.dumped_by,
            facts.scan,
        )
        info.copy_rows, info.copy_lines = facts.copy_rows, facts.copy_lines
        info.problems += facts.problems(relpath)
        return info

    def inspect_side(self, side: str) -> list[SecretFile]:
        files = [self.inspect(rel) for rel in SIDE_FILES[side]]
        for f in files:
            if twin := self._same_bytes_on_another_side(side, f):
                f.problems.append(
                    f"the same bytes as {twin}: one of the two is in the wrong slot "
                    "(e.g. the Legacy schema copied into the Modernized slot); ask Ops which"
                )
        return files

    def _same_bytes_on_another_side(self, side: str, file: SecretFile) -> str | None:
        """A Legacy dump in a Modernized slot (or the reverse) passes every per-file check:
        both are whole schema dumps. The same content in two sides' slots gives it away."""
        if not file.sha256:
            return None
        for relpath in self._twin_candidates(side, file.size):
            if self.inspect(relpath).sha256 == file.sha256:
                return relpath
        return None

    def _twin_candidates(self, side: str, size: int | None) -> list[str]:
        """The other sides' files of this size: only they can hold the same bytes, and only
        they are read for it (never a 2 GB seed of another size)."""
        others = [rel for other, rels in SIDE_FILES.items() if other != side for rel in rels]
        return [rel for rel in others if size is not None and self._size(rel) == size]

    def side_reads(self, side: str) -> list[str]:
        """Every file `inspect_side` reads: the side's own, and the other sides' files of the
        same size (the wrong-slot check). What a sensor tick must count before reading."""
        own = SIDE_FILES[side]
        return [*own, *{rel for f in own for rel in self._twin_candidates(side, self._size(f))}]

    def _size(self, relpath: str) -> int | None:
        st = self._regular(relpath)
        return None if st is None else st.st_size

    def _regular(self, relpath: str) -> os.stat_result | None:
        """The file `relpath` as `inspect` would reach it, when it is a regular file (a link
        on the way, or the file one, is never read: it counts nothing)."""
        try:
            st = lstat_below(self.root, relpath)
        except OSError:
            return None
        return st if st is not None and stat.S_ISREG(st.st_mode) else None

    def inspect_all(self) -> list[SecretFile]:
        return [f for side in SIDES for f in self.inspect_side(side)]

    def unread_bytes(self, relpaths: Iterable[str]) -> int:
        """How many bytes of these files a look would have to read (their sha256 and facts are
        not cached yet): what decides whether a sensor tick may read them or leaves that to
        the intake run. Files that cannot be read (missing, not regular) count nothing."""
        cache, total = self._load_cache(), 0
        for relpath in relpaths:
            st = self._regular(relpath)
            if st is not None and _cache_key(self.root / relpath, st) not in cache:
                total += st.st_size
        return total

    def _facts(self, path: Path, st: os.stat_result, handle: BinaryIO) -> DumpFacts:
        """`read_dump` of the open `handle` (`path`, stat `st`), cached by inode, size, mtime
        and ctime: an in-place edit with the mtime put back still changes the ctime, so it is
        read again."""
        key = _cache_key(path, st)
        cache = self._load_cache()
        if isinstance(cache.get(key), dict):
            try:
                return DumpFacts(**cache[key])
            except TypeError:
                pass  # an older cache layout: read the file again
        facts = read_dump(handle)
        self._remember(path, key, asdict(facts))
        return facts

    def _load_cache(self) -> dict[str, dict]:
        """The cache, read only from the state folder checked as this user's own, never
        through a link (a cache another user could plant would vouch for any file)."""
        try:
            return json.loads(read_private(self.cache_path))
        except (OSError, ValueError):
            return {}

    def _remember(self, path: Path, key: str, facts: dict) -> None:
        """Add one file's facts to the cache, merged under a lock with what other processes
        added meanwhile (two targets' intake runs read at once: the last writer must not drop
        the other's entries, or the sensor finds those files unread again). Lock and cache
        are created in the private state folder by the one rule (`files.Folder`)."""
        try:
            with private_folder(self.cache_path.parent) as state:
                lock = state.lock_file(self.cache_path.with_suffix(".lock").name)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    cache = self._load_cache()
                    cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}
                    cache[key] = facts
                    data = json.dumps(cache, indent=0).encode()
                    state.write(self.cache_path.name, lambda out: out.write(data))
                finally:
                    os.close(lock)
        except OSError:
            pass  # a cache we cannot write only costs time


@dataclass
class Intake:
    """The vetted files of every side of the run (all usable, else `intake` raised)."""

    files: dict[str, list[SecretFile]]

    def side(self, side: str) -> list[SecretFile]:
        return self.files[side]


def intake(settings: Settings, sides: Iterable[str], evidence: EvidenceStore) -> Intake:
    """Runbook §0: find and vet the files of every side; record hashes in `investigation.log`;
    stop with an Ops request in `baseline_search.log` if any file is unusable."""
    store = SecretsStore(settings.paths)
    sides = list(sides)
    found = {side: store.inspect_side(side) for side in sides}
    files = [f for side in sides for f in found[side]]
    lines = [f"# Secrets root: {settings.paths.secrets_dir}", f"# sides: {', '.join(sides)}"]
    for f in files:
        lines.append(f"{f.relpath}: {f.status}" + (f" (mode {f.mode})" if f.mode else ""))
    blocked = [f for f in files if not f.usable]
    if blocked:
        lines += ["", "BLOCKED: no reset, no psql, no flyway until Ops delivers.", ""]
        lines.append(ops_request(settings, sides, files, evidence.label))
    evidence.write("baseline_search.log", "\n".join(lines) + "\n")
    hashed = [f.shasum_line() for f in files if f.sha256]
    if hashed:
        evidence.write("investigation.log", "\n".join(hashed) + "\n")
    if blocked:
        names = ", ".join(f"{f.relpath} ({f.status})" for f in blocked)
        raise SecretsBlocked(
            f"Secrets not usable: {names}. Nothing was touched; the request to Ops is in "
            f"{evidence.label}/baseline_search.log",
            {f.relpath: f.status for f in blocked},
        )
    return Intake(found)
