"""Runbook §0: encrypted ZIPs received from Ops are unpacked into the Secrets store.

A ZIP dropped into `<Secrets>/inbox/` (AES or ZipCrypto, password `SECRETS_ZIP_PASSWORD`) is
unpacked into its `<category>/db-baseline/` folder, files mode 0600, their `shasum -a 256` lines
appended to the evidence root's `investigation.log`, and the ZIP moved to `inbox/done/`.

All or nothing: every entry is checked and streamed into a private scratch folder outside the
inbox (`<state>/inbox-unpacking/`, which no drop-box account can write) before anything is placed,
by descriptor, never over an existing file, and hashed as placed (`files.py`). The inbox
itself is written by others: nothing in it is opened by path or through a link. A ZIP that cannot
be trusted —
a path leaving its folder, a link, a wrong password, damage, a bomb, a name that is not a baseline
file, or a file that would replace different content — is moved to `inbox/refused/` with a
`.reason.txt` beside it, so a watcher does not try it again on every look. The password is never
written anywhere: the files written here pass the settings' redactor, the messages returned
cross the boundary of whoever shows them (the CLI, a step).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import lzma
import os
import secrets
import stat
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

import pyzipper

from restore_assets.errors import RestoreError
from restore_assets.files import (
    CHUNK,
    Folder,
    Identity,
    NotSafe,
    append_private,
    private_folder,
    refuse_redirectable,
    sha256_of,
)
from restore_assets.redaction import escaped
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.evidence import evidence_root
from restore_assets.settings import Intake, Settings

INBOX = "inbox"
DONE = "done"
REFUSED = "refused"
_SCRATCH = "inbox-unpacking"
_KNOWN = {relpath for files in SIDE_FILES.values() for relpath in files}
_BY_NAME = {PurePosixPath(relpath).name: relpath for relpath in _KNOWN}
_FOLDERS = {str(p) for relpath in _KNOWN for p in PurePosixPath(relpath).parents if str(p) != "."}


@dataclass(frozen=True)
class Limits:
    """Zip-bomb limits in bytes, from the settings' intake section (RESTORE_ZIP_MAX_MIB,
    RESTORE_ZIP_MAX_RATIO), enforced on the bytes actually decompressed (headers can lie)."""

    max_total_bytes: int
    max_ratio: int
    ratio_floor: int = 1 << 20  # below 1 MiB an entry may compress as well as it likes

    @classmethod
    def of(cls, intake: Intake) -> Limits:
        return cls(max_total_bytes=intake.zip_max_total_mib << 20, max_ratio=intake.zip_max_ratio)


@dataclass
class InboxResult:
    """What became of one ZIP: `unpacked`, `refused`, `waiting` (next look) or `failed`."""

    name: str
    status: str
    detail: str
    files: list[str] = field(default_factory=list)  # relpaths now holding the archive's content
    seen: list[int] = field(default_factory=list)  # the ZIP's [size, mtime_ns] at this look

    def line(self) -> str:
        where = f"{INBOX}/{self.name}" if self.name else INBOX
        return f"{where}: {self.status}: {self.detail}"


class Refused(RestoreError):
    """This archive is not unpacked; the message says why, for a person. Never leaves the
    inbox: `_one` turns it into the archive's `refused` result."""


def unpack_inbox(
    settings: Settings,
    previous: Mapping[str, list[int]] | None = None,
    limits: Limits | None = None,
) -> list[InboxResult]:
    """Unpack every ZIP in `<Secrets>/inbox/`. With `previous` (the sensor's last look, ZIP name
    → [size, mtime_ns]) only ZIPs unchanged since then are touched: one still being copied waits.
    Without it (a person asking) everything there now is unpacked."""
    limits = limits or Limits.of(settings.intake)
    try:
        root = Folder.root(settings.paths.secrets_dir)
    except FileNotFoundError:
        return []
    with root:
        try:
            inbox = root.sub(INBOX)
        except FileNotFoundError:
            return []
        except NotSafe as exc:
            return [InboxResult("", "failed", f"{exc}; nothing unpacked")]
        with inbox:
            try:
                lock = inbox.lock_file(".lock")
            except NotSafe as exc:
                return [InboxResult("", "failed", f"{exc}; nothing unpacked")]
            with _locked(lock) as held:
                if not held:
                    return [InboxResult("", "waiting", "another unpack holds the inbox; next look")]
                try:
                    with (
                        _scratch_root(settings) as scratch,
                        inbox.sub(DONE, create=True, private=True) as done,
                        inbox.sub(REFUSED, create=True, private=True) as refused,
                    ):
                        names = [n for n in os.listdir(inbox.fd) if n.lower().endswith(".zip")]
                        zips = sorted(n for n in names if n[0] != ".")
                        places = _Places(root, inbox, scratch, done, refused)
                        return [_one(settings, places, n, previous, limits) for n in zips]
                except NotSafe as exc:
                    return [InboxResult("", "failed", f"{exc}; nothing unpacked")]


def look_at_inbox(
    settings: Settings, previous: Mapping[str, list[int]]
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """A sensor tick's look, by `lstat` only: every ZIP in the inbox with its [size, mtime_ns],
    and those unchanged since `previous` (settled: the intake run unpacks them)."""
    seen = {}
    try:  # the inbox as unpack_inbox reaches it: never through a link
        with Folder.root(settings.paths.secrets_dir) as root, root.sub(INBOX) as inbox:
            names = [n for n in os.listdir(inbox.fd) if n.lower().endswith(".zip") and n[0] != "."]
            for name in sorted(names):
                with contextlib.suppress(OSError):  # gone between the listing and the look
                    if (st := inbox.lstat(name)) is not None:
                        seen[name] = [st.st_size, st.st_mtime_ns]
    except (OSError, NotSafe):
        return {}, {}
    settled = {name: s for name, s in seen.items() if previous.get(name) == s}
    return seen, settled


@contextmanager
def _locked(fd: int) -> Iterator[bool]:
    """The sensor and a person's `intake-zip` never unpack the same ZIP twice at once."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def _scratch_root(settings: Settings) -> Iterator[Folder]:
    """`<state>/inbox-unpacking/`, private; what a process killed mid-unpack left is removed."""
    refuse_redirectable(settings.paths.state_dir)  # as root, the clean-up deletes what it finds
    with (
        private_folder(settings.paths.state_dir) as state,  # checked ours, as configured
        state.sub(_SCRATCH, create=True, private=True) as scratch,  # never through a link
    ):
        for leftover in os.listdir(scratch.fd):
            scratch.remove_tree(leftover)
        yield scratch


@contextmanager
def _scratch(base: Folder) -> Iterator[Folder]:
    """A fresh private folder for one archive, removed with all in it afterwards."""
    name = secrets.token_hex(8)
    try:
        with base.sub(name, create=True, private=True) as folder:
            yield folder
    finally:
        base.remove_tree(name)


@dataclass(frozen=True)
class _Places:
    """The folders one look works in, each held by descriptor: the Secrets root, the inbox (the
    drop-box writes there), and the private scratch, `done/` and `refused/`."""

    root: Folder
    inbox: Folder
    scratch: Folder
    done: Folder
    refused: Folder


def _one(
    settings: Settings,
    places: _Places,
    name: str,
    previous: Mapping[str, list[int]] | None,
    limits: Limits,
) -> InboxResult:
    shown = escaped(name)  # chosen by whoever wrote the ZIP: never a line of its own
    st = places.inbox.lstat(name)
    if st is None:
        return InboxResult(shown, "waiting", "gone before it was looked at")
    seen = [st.st_size, st.st_mtime_ns]
    password = settings.intake.zip_password
    archive: BinaryIO | None = None
    try:
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file (a link or device in the inbox)")
        if previous is not None and previous.get(name) != seen:
            detail = f"new or still arriving ({st.st_size} bytes); next look"
            return InboxResult(shown, "waiting", detail, seen=seen)
        if password is None:
            detail = "SECRETS_ZIP_PASSWORD is not set; the ZIP stays in the inbox"
            return InboxResult(shown, "waiting", detail, seen=seen)
        secret = password.get_secret_value().encode("utf-8")
        archive = places.inbox.open_read(name)  # what is unpacked, hashed and moved: this inode
        st = os.fstat(archive.fileno())
        files = _unpack(archive, places.root, places.scratch, secret, limits)
    except Refused as exc:
        # Written beside the ZIP and in investigation.log, files no run's evidence store writes.
        reason = settings.redactor(str(exc))
        why = f"{shown} refused: {reason}\n"
        moved, note = _set_aside(places, name, places.refused, st, why)
        _record(settings, f"{shown} refused: {reason}{note}", {}, moved, archive)
        return InboxResult(shown, "refused", f"{reason}; moved to {moved}{note}")
    except OSError as exc:  # our side (disk full, permissions), or a file or folder not safe to
        detail = f"not unpacked ({exc}); the ZIP stays in the inbox"  # use: nothing placed
        return InboxResult(shown, "failed", detail, seen=seen)
    else:
        moved, note = _set_aside(places, name, places.done, st)
        _record(settings, f"{shown} unpacked{note}", files, moved, archive)
    finally:
        if archive is not None:
            archive.close()
    names = ", ".join(files)
    detail = f"{len(files)} file(s) in place ({names}); moved to {moved}{note}"
    return InboxResult(shown, "unpacked", detail, files=list(files))


def _unpack(
    source: BinaryIO, root: Folder, scratch_root: Folder, password: bytes, limits: Limits
) -> dict[str, str]:
    """Check, extract into private scratch, check against what is in place, then place: relpath
    → sha256 of every file the archive holds, as it is in place."""
    try:
        archive = pyzipper.AESZipFile(source)
    except (pyzipper.BadZipFile, EOFError, NotImplementedError) as exc:
        raise Refused(f"corrupt or truncated: not a readable ZIP archive ({exc})") from None
    with archive, _scratch(scratch_root) as scratch:
        destinations = _destinations(archive.infolist())
        archive.setpassword(password)
        extracted = _extract(archive, destinations, scratch, root, limits)
        return _place(root, scratch, extracted, _in_place(root, extracted))


def _destinations(infos: list[pyzipper.ZipInfo]) -> list[tuple[pyzipper.ZipInfo, str]]:
    """Each file entry and the baseline file it becomes; refuses anything else."""
    destinations: list[tuple[pyzipper.ZipInfo, str]] = []
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or ":" in (parts or ("",))[0]:
            raise Refused(f"entry {name!r} leaves its folder (zip-slip: '..' or absolute path)")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise Refused(f"entry {name!r} is a symbolic link; links are never unpacked")
        if info.is_dir():
            if name.rstrip("/") in _FOLDERS:
                continue
            raise Refused(f"entry {name!r} is not a baseline folder")
        if kind not in (0, stat.S_IFREG):
            raise Refused(f"entry {name!r} is not a regular file")
        relpath = name if name in _KNOWN else _BY_NAME.get(name)
        if relpath is None:
            expected = ", ".join(sorted(_KNOWN))
            raise Refused(f"entry {name!r} is not a baseline file; expected one of {expected}")
        if any(relpath == taken for _, taken in destinations):
            raise Refused(f"entry {name!r}: a second entry for {relpath}")
        if not info.flag_bits & 0x1:
            raise Refused(f"entry {name!r} is not encrypted; the runbook receives encrypted ZIPs")
        destinations.append((info, relpath))
    if not destinations:
        raise Refused("the archive holds no baseline file")
    return destinations


def _extract(
    archive: pyzipper.AESZipFile,
    destinations: list[tuple[pyzipper.ZipInfo, str]],
    scratch: Folder,
    root: Folder,
    limits: Limits,
) -> dict[str, tuple[str, str, Identity]]:
    """Stream each entry into `scratch` (mode 0600), counting what really comes out: relpath →
    (scratch file name, sha256, which file)."""
    free = min(_free(scratch.fd), _free(root.fd))
    cap = min(limits.max_total_bytes, free)
    total = 0
    extracted: dict[str, tuple[str, str, Identity]] = {}
    for index, (info, relpath) in enumerate(destinations):
        digest = hashlib.sha256()
        ratio_cap = max(limits.ratio_floor, limits.max_ratio * info.compress_size)

        def write(out: BinaryIO, info=info, digest=digest, ratio_cap=ratio_cap) -> None:
            nonlocal total
            size = 0
            with _reading(info.filename), archive.open(info) as source:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if total > cap:
                        raise Refused(
                            f"zip bomb: more than {cap} bytes uncompressed (limit: the smaller of "
                            f"{limits.max_total_bytes} and the free space)"
                        )
                    if size > ratio_cap:
                        raise Refused(
                            f"zip bomb: entry {info.filename!r} inflates more than "
                            f"{limits.max_ratio}:1 ({info.compress_size} bytes compressed)"
                        )
                    digest.update(chunk)
                    out.write(chunk)

        written = scratch.write(str(index), write)
        extracted[relpath] = (str(index), digest.hexdigest(), written)
    return extracted


def _free(fd: int) -> int:
    st = os.statvfs(fd)
    return st.f_bavail * st.f_frsize


@contextmanager
def _reading(entry: str) -> Iterator[None]:
    """The archive's failures as refusals; a failure to write the scratch file stays an OSError."""
    try:
        yield
    except Refused:
        raise  # a zip bomb, found while reading: a RuntimeError too, not pyzipper's
    except NotImplementedError as exc:  # a compression or encryption zipfile cannot read
        raise Refused(f"entry {entry!r} cannot be read here: {exc}") from None
    except RuntimeError as exc:  # pyzipper's "Bad password" (NotImplementedError is one too)
        if "password" not in str(exc).lower():
            raise
        raise Refused(f"wrong password: SECRETS_ZIP_PASSWORD does not decrypt {entry!r}") from None
    except (pyzipper.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise Refused(
            f"corrupt or truncated: entry {entry!r} fails its integrity check ({exc}); damaged in "
            "transit, or a wrong password"
        ) from None
    except (OSError, ValueError) as exc:  # bz2's damage has no errno; the scratch disk's has
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise Refused(f"corrupt or truncated: entry {entry!r} cannot be read ({exc})") from None


def _in_place(root: Folder, extracted: dict[str, tuple[str, str, Identity]]) -> dict[str, str]:
    """relpath → sha256 of each file already in place with the archive's content; refuses a
    different file in the way, or a link on the way (the Secrets store is written by others)."""
    in_place = {}
    for relpath, (_, sha, _) in extracted.items():
        rel = PurePosixPath(relpath)
        try:
            with root.walk(rel.parent) as folder:
                existing = folder.lstat(rel.name)
                if existing is None:
                    continue
                if not stat.S_ISREG(existing.st_mode):
                    raise Refused(f"{relpath} already exists and is not a regular file")
                current = folder.sha256(rel.name)[0]
        except FileNotFoundError:
            continue  # its folder is not there yet
        except NotSafe:
            raise Refused(f"{relpath}: a folder on its way is a link or not a folder") from None
        if current != sha:
            raise Refused(
                f"{relpath} already exists with different content (sha256 {current[:16]}…, the "
                f"archive's {sha[:16]}…); move the old file away first if this delivery "
                "replaces it"
            )
        in_place[relpath] = current
    return in_place


def _place(
    root: Folder,
    scratch: Folder,
    extracted: dict[str, tuple[str, str, Identity]],
    in_place: dict[str, str],
) -> dict[str, str]:
    """Place every file not in place yet, never over anything, and hash it as placed; if one
    fails, take back the ones already placed. relpath → sha256 of every file, sorted."""
    hashes = dict(in_place)
    placed: list[tuple[PurePosixPath, Identity]] = []
    try:
        for relpath, (name, sha, written) in extracted.items():
            if relpath in in_place:
                continue
            rel = PurePosixPath(relpath)
            with root.walk(rel.parent, create=True) as folder:
                identity = folder.place(rel.name, scratch, name, written)
                placed.append((rel, identity))
                hashes[relpath] = folder.sha256(rel.name, expect=identity)[0]
            if hashes[relpath] != sha:
                raise NotSafe(root.path / relpath, "changed while it was placed")
    except OSError:
        for rel, identity in placed:
            with contextlib.suppress(OSError), root.walk(rel.parent) as folder:
                folder.unlink(rel.name, identity)
        raise
    return dict(sorted(hashes.items()))


def _set_aside(
    places: _Places, name: str, folder: Folder, st: os.stat_result, reason: str | None = None
) -> tuple[str, str]:
    """Move `name` into the private `done/` or `refused/` under a name not taken yet (a ZIP
    re-sent under the same name), with its `.reason.txt` when refused: where it went, and a
    note if what moved is not the file that was read (replaced meanwhile in the inbox)."""
    stem, suffix = os.path.splitext(name)
    target, number = name, 1
    while folder.lstat(target) or folder.lstat(target + ".reason.txt"):
        number += 1
        target = f"{stem}-{number}{suffix}"
    try:
        same = places.inbox.move(name, folder, target, Identity.of(st))
    except OSError as exc:  # deleted or swapped meanwhile (the drop-box can): still recorded
        return f"{INBOX}/{escaped(name)}", f" (not moved to {folder.path.name}/: {exc})"
    if reason is not None:
        folder.write(target + ".reason.txt", lambda out: out.write(reason.encode()))
    note = "" if same else " (replaced in the inbox meanwhile: what moved is not what was read)"
    return f"{INBOX}/{folder.path.name}/{escaped(target)}", note


def _record(
    settings: Settings,
    what: str,
    files: Mapping[str, str],
    moved: str,
    archive: BinaryIO | None,
) -> None:
    """The runbook's `shasum -a 256` lines (files, then the ZIP itself: the bytes that were read,
    from the descriptor they were read through) in the evidence root's `investigation.log`."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# {stamp} {INBOX}/{what}"]
    lines += [f"{sha}  {relpath}" for relpath, sha in files.items()]
    zip_sha = sha256_of(archive) if archive is not None else "(not a regular file: not read)"
    lines.append(f"{zip_sha}  {moved}")
    # The evidence root's own log, outside any run's evidence store: redacted here.
    text = settings.redactor("\n".join(lines) + "\n")
    append_private(
        evidence_root(settings) / "investigation.log", text, root=settings.paths.artifacts_dir
    )
