"""Runbook §7: the evidence folder `$RESTORE_ARTIFACTS_DIR/parity-manual/db-restore/<UTC>/`.

Every write goes through `redact` (the run's `Settings.redactor`): this is the evidence's
redaction boundary, so a password can never land in a file an auditor reads.
Medical rows are kept out by construction: callers only ever write counts, names and hashes.
`README.md` is re-rendered from the steps recorded so far, so a run that stops half-way still
leaves a readable folder.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from restore_assets.errors import EvidenceError
from restore_assets.files import Folder, NotSafe, below, private_folder
from restore_assets.named_targets import labelled
from restore_assets.settings import Settings

EVIDENCE_SUBDIR = Path("parity-manual") / "db-restore"
RUN_MARKER = ".run_id"
STEPS_FILE = ".steps.json"
START_STEP = "run started"  # README.md's first row: who started the run


def evidence_root(settings: Settings) -> Path:
    """Where a target's run folders and `baseline_search.log` go: `db-restore/` for the
    environment's target, as always; `db-restore/<target>/` for each target of targets.yaml."""
    root = settings.paths.artifacts_dir / EVIDENCE_SUBDIR
    return root / settings.target_name if labelled(settings) else root


def folder_name(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class EvidenceStore:
    """One run's evidence folder.

    Written by `files.py`'s one rule: `db-restore/` (and `<target>/`) must be the project's own
    folders (`private_folder` from the artifacts root); the run folder is reached from it by
    descriptor, never through a link, and must still be the folder the run created (device and
    inode) — one moved away or replaced is refused, nothing is written into what took its place.
    """

    def __init__(
        self,
        folder: Path,
        redact: Callable[[str], str],
        artifacts_dir: Path,
        identity: tuple[int, int] | None = None,
        started_by: str | None = None,
    ):
        self.folder = folder
        self._redact = redact
        self.artifacts_dir = artifacts_dir
        self._identity = identity  # (st_dev, st_ino) of the run folder, when this process knows it
        self.started_by = started_by  # who started the run (`restore_assets.started_by`)

    @classmethod
    def for_run(
        cls,
        settings: Settings,
        run_id: str,
        started: dt.datetime,
        redact: Callable[[str], str],
        started_by: str | None = None,
    ) -> EvidenceStore:
        """The run's folder under its target's `evidence_root`, created once; a second run in
        the same second gets a suffix."""
        artifacts_dir = settings.paths.artifacts_dir
        base = evidence_root(settings)
        name = folder_name(started)
        try:
            with private_folder(base, artifacts_dir) as root:
                for attempt in range(1, 100):
                    entry = name if attempt == 1 else f"{name}-{attempt}"
                    found = _run_folder_in(root, entry, run_id)
                    if found is not None:
                        return cls(base / entry, redact, artifacts_dir, found, started_by)
        except NotSafe as exc:
            raise EvidenceError(f"evidence folder refused: {exc}") from None
        raise EvidenceError(f"could not create an evidence folder under {base}")

    @property
    def label(self) -> str:
        """The folder as the runbook writes it (`artifacts/parity-manual/db-restore/<UTC>`):
        relative to the working directory (the repository checkout), so paste-ready lines stay
        true on another machine; absolute only when the artifacts live elsewhere."""
        try:
            return self.folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return str(self.folder)

    def redact(self, text: str) -> str:
        """The run's redactor: the evidence's, and that of what the shells hand Dagster."""
        return self._redact(text)

    def path(self, name: str) -> Path:
        return self.folder / name

    @contextmanager
    def log(self, name: str) -> Iterator[TextIO]:
        """`name` for a log written as it comes (psql's output), opened by descriptor in the
        run folder as `opened` holds it: never by path (a folder on the way could be swapped
        between a check and the open)."""
        with self.opened() as run, run.open_log(name) as log:
            yield log

    @contextmanager
    def opened(self) -> Iterator[Folder]:
        """The run folder, held by descriptor: reached from the artifacts root without following
        a link, every folder on the way the project's own, and the very folder the run created
        (as the path names it now too); anything else raises EvidenceError."""
        rel = below(self.folder, self.artifacts_dir)
        if rel is None or not rel.parts:
            raise EvidenceError(f"evidence folder {self.folder} is not below {self.artifacts_dir}")
        try:
            with Folder.root(self.artifacts_dir) as root:
                run = root.walk(rel, private=True)
        except (NotSafe, FileNotFoundError) as exc:
            raise EvidenceError(f"evidence folder {self.folder} refused: {exc}") from None
        with run:
            held = os.fstat(run.fd)
            try:
                now = os.stat(self.folder, follow_symlinks=False)
            except OSError:
                now = None
            mine = (held.st_dev, held.st_ino)
            if (
                self._identity is not None
                and mine != self._identity
                or (now is None or (now.st_dev, now.st_ino) != mine)
            ):
                raise EvidenceError(
                    f"evidence folder {self.folder} is no longer the folder this run created "
                    "(moved or replaced by someone else); nothing was written there"
                )
            yield run

    def write(self, name: str, text: str) -> Path:
        """Write `name` (redacted), mode 0600, atomically."""
        data = self._redact(text).encode("utf-8")
        with self.opened() as run:
            run.write(name, lambda out: out.write(data))
        return self.path(name)

    def append(self, name: str, text: str) -> Path:
        """Add to a file (a later step re-checking what an earlier one did keeps both)."""
        with self.opened() as run:
            existing = ""
            if run.lstat(name) is not None:
                with run.open_read(name) as handle:
                    existing = handle.read().decode("utf-8")
            data = self._redact(existing + text).encode("utf-8")
            run.write(name, lambda out: out.write(data))
        return self.path(name)

    @contextmanager
    def steps_locked(self) -> Iterator[dict[str, dict[str, str]]]:
        """The steps recorded so far (in the order first recorded), to change while no other
        process of the run can (sides may run in parallel processes, hence the file lock);
        written back, and README.md re-rendered, on the way out."""
        with self.opened() as run:
            with os.fdopen(_steps_file(run), "r+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                text = handle.read()
                steps = json.loads(text) if text.strip() else {}
                yield steps
                handle.seek(0)
                handle.truncate()
                handle.write(self._redact(json.dumps(steps, indent=2, ensure_ascii=False)))
                readme = self._redact(render_readme(self.folder, steps, os.listdir(run.fd)))
                run.write("README.md", lambda out: out.write(readme.encode("utf-8")))

    def record_start(self, run_id: str) -> None:
        """README.md's first row: who started the run (written once; a later step finds it)."""
        with self.steps_locked() as steps:
            if steps.get(START_STEP, {}).get("by") != self.started_by:
                steps[START_STEP] = {"status": "recorded", "by": plain(self.started_by)}
                steps[START_STEP]["run id"] = run_id

    def record_step(self, step: str, status: str, summary: Mapping[str, object]) -> None:
        """Add one step's outcome and re-render README.md."""
        with self.steps_locked() as steps:
            steps[step] = {"status": status, **{k: plain(v) for k, v in summary.items()}}


def _run_folder_in(root: Folder, name: str, run_id: str) -> tuple[int, int] | None:
    """The run folder `name` in `root` (device, inode): created 0700 with its `.run_id`, or
    found holding this run's; None when it is another run's (the caller tries another name)."""
    try:
        os.mkdir(name, 0o700, dir_fd=root.fd)  # hashes, hostnames, counts: for the auditor only
        created = True
    except FileExistsError:
        created = False
    with root.sub(name, private=True) as run:
        if created:
            run.write(RUN_MARKER, lambda out: out.write(f"{run_id}\n".encode()), replace=False)
        else:
            try:
                with run.open_read(RUN_MARKER) as handle:
                    if handle.read().decode("utf-8", "replace").strip() != run_id:
                        return None
            except FileNotFoundError:
                return None
        st = os.fstat(run.fd)
        return st.st_dev, st.st_ino


def _steps_file(run: Folder) -> int:
    """`.steps.json` in the run folder, opened read-write (created 0600), never through a link,
    a FIFO or someone else's (hard-linked) file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    where = run.path / STEPS_FILE
    try:
        fd = os.open(STEPS_FILE, flags, 0o600, dir_fd=run.fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise EvidenceError(f"{where}: a link or not a file; refused") from None
        raise
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1):
        os.close(fd)
        raise EvidenceError(f"{where}: not this process's own regular file; refused")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def plain(value: object) -> str:
    """A value as a person writes it: `last_value=200, is_called=false`, never a Python repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(plain(v) for v in value)
    return str(value)


def render_readme(
    folder: Path, steps: Mapping[str, Mapping[str, str]], names: Iterable[str] | None = None
) -> str:
    """README.md: the steps and the folder's files (`names`, as listed by descriptor)."""
    lines = [
        f"# DB restore evidence — {folder.name}",
        "",
        "Written by restore_assets (runbook: OpenDolphin DB baseline restore). No passwords and no",
        "seed rows are recorded here: only file hashes, counts, versions and psql/flyway output.",
        "",
        "| step | status | summary |",
        "| --- | --- | --- |",
    ]
    for step, summary in steps.items():
        detail = "; ".join(f"{k}: {v}" for k, v in summary.items() if k != "status")
        lines.append(f"| {step} | {summary.get('status', '')} | {detail.replace('|', '/')} |")
    if names is None:
        names = [p.name for p in folder.iterdir()]
    files = sorted(name for name in names if not name.startswith("."))
    lines += ["", "## Files", ""] + [f"- [{name}]({name})" for name in files]
    return "\n".join(lines) + "\n"
