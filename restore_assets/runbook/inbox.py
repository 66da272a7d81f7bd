"""Runbook §0: encrypted ZIPs received from Ops are unpacked into the Secrets store.

A ZIP dropped into `<Secrets>/inbox/` (AES or ZipCrypto, password `SECRETS_ZIP_PASSWORD`) is
unpacked into its `<category>/db-baseline/` folder, files mode 0600, their `shasum -a 256` lines
appended to the evidence root's `investigation.log`, and the ZIP moved to `inbox/done/`.

All or nothing: every entry is checked and streamed into a scratch folder inside the inbox (same
filesystem) before anything is moved into place with `os.replace`. A ZIP that cannot be trusted —
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
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyzipper

from restore_assets.errors import RestoreError
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.evidence import evidence_root
from restore_assets.runbook.files import (
    CHUNK,
    append_private,
    make_private_dirs,
    resolves_inside,
    sha256_file,
    write_private,
)
from restore_assets.settings import Intake, Settings

INBOX = "inbox"
DONE = "done"
REFUSED = "refused"
_SCRATCH = ".unpacking-"
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
    inbox = settings.paths.secrets_dir / INBOX
    if not inbox.is_dir():
        return []
    limits = limits or Limits.of(settings.intake)
    with _locked(inbox) as held:
        if not held:
            return [InboxResult("", "waiting", "another unpack holds the inbox; next look")]
        for leftover in inbox.glob(f"{_SCRATCH}*"):  # from a process killed mid-unpack
            shutil.rmtree(leftover, ignore_errors=True)
        zips = [p for p in inbox.iterdir() if p.suffix.lower() == ".zip" and p.name[0] != "."]
        return [_one(settings, path, previous, limits) for path in sorted(zips)]


def look_at_inbox(
    settings: Settings, previous: Mapping[str, list[int]]
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """A sensor tick's look, by `lstat` only: every ZIP in the inbox with its [size, mtime_ns],
    and those unchanged since `previous` (settled: the intake run unpacks them)."""
    inbox = settings.paths.secrets_dir / INBOX
    try:
        entries = [p for p in inbox.iterdir() if p.suffix.lower() == ".zip" and p.name[0] != "."]
    except OSError:
        return {}, {}
    seen = {}
    for path in sorted(entries):
        with contextlib.suppress(OSError):  # gone between the listing and the look
            st = path.lstat()
            seen[path.name] = [st.st_size, st.st_mtime_ns]
    settled = {name: s for name, s in seen.items() if previous.get(name) == s}
    return seen, settled


@contextmanager
def _locked(inbox: Path) -> Iterator[bool]:
    """The sensor and a person's `intake-zip` never unpack the same ZIP twice at once."""
    fd = os.open(inbox / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _one(
    settings: Settings, path: Path, previous: Mapping[str, list[int]] | None, limits: Limits
) -> InboxResult:
    st = path.lstat()
    seen = [st.st_size, st.st_mtime_ns]
    password = settings.intake.zip_password
    try:
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file (a link or device in the inbox)")
        if previous is not None and previous.get(path.name) != seen:
            detail = f"new or still arriving ({st.st_size} bytes); next look"
            return InboxResult(path.name, "waiting", detail, seen=seen)
        if password is None:
            detail = "SECRETS_ZIP_PASSWORD is not set; the ZIP stays in the inbox"
            return InboxResult(path.name, "waiting", detail, seen=seen)
        secret = password.get_secret_value().encode("utf-8")
        files = _unpack(path, settings.paths.secrets_dir, secret, limits)
    except Refused as exc:
        # Written beside the ZIP and in investigation.log, files no run's evidence store writes.
        reason = settings.redactor(str(exc))
        moved = _move_aside(path, path.parent / REFUSED)
        write_private(
            moved.with_name(moved.name + ".reason.txt"),
            lambda out: out.write(f"{path.name} refused: {reason}\n".encode()),
        )
        _record(settings, f"{path.name} refused: {reason}", {}, moved)
        return InboxResult(path.name, "refused", f"{reason}; moved to {_rel(settings, moved)}")
    except OSError as exc:  # our side (disk full, permissions): nothing placed, try again later
        detail = f"not unpacked ({exc}); the ZIP stays in the inbox"
        return InboxResult(path.name, "failed", detail, seen=seen)
    moved = _move_aside(path, path.parent / DONE)
    _record(settings, f"{path.name} unpacked", files, moved)
    names = ", ".join(files)
    detail = f"{len(files)} file(s) in place ({names}); moved to {_rel(settings, moved)}"
    return InboxResult(path.name, "unpacked", detail, files=list(files))


def _unpack(path: Path, root: Path, password: bytes, limits: Limits) -> dict[str, str]:
    """Check, extract into scratch, check against what is in place, then move in: relpath →
    sha256 of every file the archive holds."""
    try:
        archive = pyzipper.AESZipFile(path)
    except (pyzipper.BadZipFile, EOFError, NotImplementedError) as exc:
        raise Refused(f"corrupt or truncated: not a readable ZIP archive ({exc})") from None
    with archive:
        destinations = _destinations(archive.infolist())
        archive.setpassword(password)
        scratch = Path(tempfile.mkdtemp(prefix=_SCRATCH, dir=path.parent))
        try:
            extracted = _extract(archive, destinations, scratch, root, limits)
            _place(root, _new_files(root, extracted))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {relpath: sha for relpath, (_, sha) in sorted(extracted.items())}


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
    scratch: Path,
    root: Path,
    limits: Limits,
) -> dict[str, tuple[Path, str]]:
    """Stream each entry into `scratch` (mode 0600), counting what really comes out: relpath →
    (scratch file, sha256)."""
    cap = min(limits.max_total_bytes, shutil.disk_usage(root).free)
    total = 0
    extracted: dict[str, tuple[Path, str]] = {}
    for index, (info, relpath) in enumerate(destinations):
        out_path = scratch / str(index)
        digest = hashlib.sha256()
        size = 0
        ratio_cap = max(limits.ratio_floor, limits.max_ratio * info.compress_size)
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, _reading(info.filename):
            with archive.open(info) as source:
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
        extracted[relpath] = (out_path, digest.hexdigest())
    return extracted


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


def _new_files(root: Path, extracted: dict[str, tuple[Path, str]]) -> list[tuple[Path, Path]]:
    """(scratch file, destination) for each file not already in place; refuses a different file
    in the way, or a folder on the way that leaves the Secrets root."""
    moves = []
    for relpath, (scratch_file, sha) in extracted.items():
        target = root / relpath
        existing = next((p for p in (target, *target.parents) if p.exists()), root)
        if not resolves_inside(existing, root):
            raise Refused(f"{relpath}: its folder resolves outside the Secrets root")
        if not os.path.lexists(target):
            moves.append((scratch_file, target))
            continue
        if target.is_symlink() or not target.is_file():
            raise Refused(f"{relpath} already exists and is not a regular file")
        current = sha256_file(target)
        if current != sha:
            raise Refused(
                f"{relpath} already exists with different content (sha256 {current[:16]}…, the "
                f"archive's {sha[:16]}…); move the old file away first if this delivery "
                "replaces it"
            )
    return moves


def _place(root: Path, moves: list[tuple[Path, Path]]) -> None:
    """Move every file into place; if one move fails, take back the ones already made."""
    placed: list[Path] = []
    try:
        for scratch_file, target in moves:
            make_private_dirs(target.parent)
            os.replace(scratch_file, target)
            placed.append(target)
    except OSError:
        for target in placed:
            target.unlink(missing_ok=True)
        raise


def _move_aside(path: Path, folder: Path) -> Path:
    """`path` into `folder` under a name not taken yet (a ZIP re-sent under the same name)."""
    make_private_dirs(folder)
    target = folder / path.name
    number = 1
    while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + ".reason.txt")):
        number += 1
        target = folder / f"{path.stem}-{number}{path.suffix}"
    os.replace(path, target)
    return target


def _rel(settings: Settings, path: Path) -> str:
    return path.relative_to(settings.paths.secrets_dir).as_posix()


def _record(settings: Settings, what: str, files: Mapping[str, str], archive: Path) -> None:
    """The runbook's `shasum -a 256` lines (files, then the ZIP itself) in the evidence root's
    `investigation.log`."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# {stamp} {INBOX}/{what}"]
    lines += [f"{sha}  {relpath}" for relpath, sha in files.items()]
    lines.append(f"{sha256_file(archive)}  {_rel(settings, archive)}")
    # The evidence root's own log, outside any run's evidence store: redacted here.
    text = settings.redactor("\n".join(lines) + "\n")
    append_private(evidence_root(settings) / "investigation.log", text)
