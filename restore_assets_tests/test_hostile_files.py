"""Whoever can write into the Secrets store or its inbox (an Ops drop-box account), acting as
that account: `nobody`, given write access to the Secrets and inbox folders these tests create,
as a drop-box account would have. The project runs as root here, as it did when the holes were
found: every file it opens or creates there goes through `files.py`, by descriptor.

Classes of issue 20: paths a Secrets writer prepares (1), the unpack folder (2), the inbox's
own files (3), a FIFO swapped in after vetting (4).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from restore_assets.errors import PreflightFailed, PsqlError
from restore_assets.files import Folder, Identity
from restore_assets.pg.session import ScriptFile
from restore_assets.runbook import inbox as inbox_module
from restore_assets.runbook.inbox import unpack_inbox
from restore_assets.runbook.intake import SecretsStore
from restore_assets.runbook.restore import backup_database
from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests.helpers import database_fingerprint, legacy_target
from restore_assets_tests.test_hostile import fed, run
from restore_assets_tests.test_inbox import PASSWORD, build_zip, demo_entries

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as `nobody` needs root")

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
STAMP = "20300102T030405Z"


def as_nobody(script: str) -> None:
    """Run `script` as the drop-box account."""
    done = subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c", script], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def shared(tmp_path):
    """A folder `nobody` can reach (pytest's tmp_path is root's alone), with a Secrets store
    whose root and inbox the drop-box account may write, and root-only files to aim at."""
    base = Path(tempfile.mkdtemp(prefix="hostile-files-", dir="/tmp"))
    base.chmod(0o755)
    secrets = base / "Secrets"
    (secrets / "inbox").mkdir(parents=True)
    for folder in (secrets, secrets / "inbox"):
        folder.chmod(0o777)  # the drop-box account's write access
    victim = base / "root-only"
    victim.mkdir(mode=0o755)
    yield secrets, victim
    shutil.rmtree(base, ignore_errors=True)


def settings_for(secrets: Path, tmp_path: Path):
    return load_settings(
        {
            "SECRETS_DIR": str(secrets),
            "SECRETS_ZIP_PASSWORD": PASSWORD,
            "RESTORE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "RESTORE_STATE_DIR": os.environ["RESTORE_STATE_DIR"],  # the session's embedded server
        }
    )


# Class 1: paths a Secrets writer prepares before a restore backs a target up.
def _temporary_name() -> str:
    """The name the backup's temporary file had (`.<name>.<pid>.tmp`): one a writer can guess."""
    return f".legacy-{legacy_target().settings.dbname}.dump.{os.getpid()}.tmp"


PREPARED = {
    "the backups folder and a link at the backup's names, made by the Secrets writer": (
        "mkdir -p {secrets}/backups/{stamp} && cd {secrets}/backups/{stamp} && ln -s {trap} {name}"
    ),
    "a UTC folder with links, planted in a backups folder left writable": (
        "mkdir -p {secrets}/backups/{stamp} && cd {secrets}/backups/{stamp} && ln -s {trap} {name}"
    ),
    "backups a link to a folder the Secrets writer owns": (
        "mkdir -p {trapdir}/{stamp} && ln -s {trapdir} {secrets}/backups"
    ),
}


@pytest.mark.parametrize("case", list(PREPARED))
def test_a_backup_never_lands_in_a_file_or_folder_a_secrets_writer_prepared(
    case, shared, tmp_path, settings
):
    """Each PREPARED case, done as `nobody` before the backup of a non-empty target."""
    secrets, _ = shared
    trapdir = secrets.parent / "nobodys"
    trapdir.mkdir()
    trapdir.chmod(0o777)
    trap = trapdir / "backup-for-me"
    as_nobody(f"touch {trap}")
    if "left writable" in case:
        (secrets / "backups").mkdir(mode=0o777)
        (secrets / "backups").chmod(0o777)
    script = PREPARED[case].format(
        secrets=secrets, stamp=STAMP, name=_temporary_name(), trap=trap, trapdir=trapdir
    )
    as_nobody(script)
    with pytest.raises(PreflightFailed):
        backup_database(legacy_target(), settings_for(secrets, tmp_path), now=NOW)
    assert trap.stat().st_size == 0  # not one byte of the target in the writer's file
    assert not [p for p in trapdir.rglob("*") if p.is_file() and p != trap]


def test_a_backup_is_a_regular_file_in_the_projects_own_folders(shared, tmp_path, settings):
    """The control: the same Secrets root, writable by the drop-box account, nothing planted."""
    secrets, _ = shared
    backup = backup_database(legacy_target(), settings_for(secrets, tmp_path), now=NOW)
    path = secrets / backup.path
    for folder in (secrets / "backups", path.parent):
        st = folder.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and st.st_mode & 0o777 == 0o700
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600
    assert hashlib.sha256(path.read_bytes()).hexdigest() == backup.sha256


# Class 1: a folder on the way to a baseline file swapped for a link (issue 20, round 3).
SEED_TEXT = "-- the genuine seed, in the Secrets root\n"
OUTSIDE_TEXT = "CREATE TABLE public.read_from_outside (id int);\n"


def _seed_and_outside(secrets: Path, victim: Path) -> tuple[Path, Path]:
    """As `nobody`: the seed in its own folders (the drop-box account's); and, root-only,
    outside the Secrets root, a file at the same relative path a link could lead to."""
    seed = secrets / LEGACY_SEED_FILE
    as_nobody(f"mkdir -p {seed.parent} && printf '%s' '{SEED_TEXT}' > {seed} && chmod 600 {seed}")
    outside = victim / Path(LEGACY_SEED_FILE).relative_to("legacy-server")
    outside.parent.mkdir(parents=True)
    outside.write_text(OUTSIDE_TEXT)
    outside.chmod(0o600)
    return seed, outside


def _store(secrets: Path, tmp_path: Path) -> SecretsStore:
    return SecretsStore(SimpleNamespace(secrets_dir=secrets, state_dir=tmp_path / "state"))


@pytest.mark.parametrize("leads", ["outside", "inside"])
def test_a_baseline_folder_that_is_a_link_is_refused_and_never_read(leads, shared, tmp_path):
    """As `nobody`: `legacy-server/` a link, to a folder outside the Secrets root holding a
    file of the right name (or to a copy inside it: a link is refused wherever it leads)."""
    secrets, victim = shared
    _, outside = _seed_and_outside(secrets, victim)
    target = victim if leads == "outside" else secrets / "copy"
    as_nobody(
        f"cd {secrets} && mv legacy-server copy && ln -s {target} legacy-server"
        if leads == "inside"
        else f"cd {secrets} && mv legacy-server moved && ln -s {target} legacy-server"
    )
    info = _store(secrets, tmp_path).inspect(LEGACY_SEED_FILE)
    assert not info.usable and info.identity is None and not info.sha256
    (problem,) = info.problems
    assert "not a regular file" in problem and "is a link" in problem, problem
    assert outside.read_text() == OUTSIDE_TEXT


def test_the_restore_never_feeds_a_file_through_a_folder_swapped_for_a_link(
    shared, tmp_path, settings
):
    """As `nobody`, after intake vetted the file a racing swap showed it (the outside one, its
    identity and sha256 as intake recorded them): the link left in place for the restore."""
    secrets, victim = shared
    _, outside = _seed_and_outside(secrets, victim)
    as_nobody(f"cd {secrets} && mv legacy-server moved && ln -s {victim} legacy-server")
    st = outside.stat()
    vetted = ScriptFile(
        LEGACY_SEED_FILE,
        secrets / LEGACY_SEED_FILE,
        hashlib.sha256(outside.read_bytes()).hexdigest(),
        Identity.of(st),
    )
    before = database_fingerprint()
    with pytest.raises(PsqlError, match="a link or not a folder"):
        run(tmp_path, [vetted])
    assert database_fingerprint() == before


def test_a_folder_swapped_for_a_link_just_before_intake_opens_is_refused(
    shared, tmp_path, monkeypatch
):
    """The race, made certain: as `nobody`, `legacy-server/` swapped for a link to an outside
    folder at the moment intake opens its first folder (after any check it made by path)."""
    secrets, victim = shared
    _, outside = _seed_and_outside(secrets, victim)
    opening, swapped = Folder.root, []

    def swap_then_open(path, **kwargs):
        if not swapped:
            as_nobody(f"cd {secrets} && mv legacy-server moved && ln -s {victim} legacy-server")
            swapped.append(path)
        return opening(path, **kwargs)

    monkeypatch.setattr(Folder, "root", staticmethod(swap_then_open))
    info = _store(secrets, tmp_path).inspect(LEGACY_SEED_FILE)
    assert swapped, "intake opened no folder"
    assert info.identity is None or info.identity.ino != outside.stat().st_ino
    assert info.sha256 != hashlib.sha256(outside.read_bytes()).hexdigest()
    assert not info.usable and "is a link" in info.status, info.status


TRIES = 3000


def _exchange_forever(uid: int, gid: int, a: bytes, b: bytes) -> None:
    """The forked swapper, as `nobody`: renameat2(RENAME_EXCHANGE) `a` and `b`, until killed."""
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        libc = ctypes.CDLL(None, use_errno=True)
        exchange, at_cwd = 2, -100  # RENAME_EXCHANGE, AT_FDCWD
        while True:
            libc.renameat2(at_cwd, a, at_cwd, b, exchange)
    finally:
        os._exit(1)


def test_a_folder_swapped_for_a_link_while_intake_looks_never_lets_it_read_outside(
    shared, tmp_path
):
    """As `nobody`, racing root: `legacy-server/` and a link to an outside folder exchanged
    (renameat2 RENAME_EXCHANGE) in a loop while intake inspects the seed. Before the fix a
    resolve() then a path open read the outside file within 1-31 tries (here: within
    3000 most runs; the test above makes the same race certain)."""
    secrets, victim = shared
    seed, outside = _seed_and_outside(secrets, victim)
    as_nobody(f"ln -s {victim} {secrets}/swap")
    nobody = pwd.getpwnam("nobody")
    store, seed_ino, outside_ino = (
        _store(secrets, tmp_path),
        seed.stat().st_ino,
        outside.stat().st_ino,
    )
    outside_sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    seen: list[tuple[int | None, str]] = []
    pid = os.fork()
    if pid == 0:
        _exchange_forever(
            nobody.pw_uid,
            nobody.pw_gid,
            bytes(secrets / "legacy-server"),
            bytes(secrets / "swap"),
        )
    try:
        for _ in range(TRIES):
            try:
                info = store.inspect(LEGACY_SEED_FILE)
            except OSError:  # refused on the way: nothing was vetted
                seen.append((None, ""))
                continue
            seen.append((info.identity.ino if info.identity else None, info.sha256))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not [s for s in seen if s[0] == outside_ino or s[1] == outside_sha], seen
    assert any(ino is None for ino, _ in seen), "the swapper never ran: nothing was tested"
    assert any(ino == seed_ino for ino, _ in seen), "never saw the genuine seed"


# Class 2: a drop-box account without the ZIP password swaps its own seed in while unpacking.
def test_a_seed_swapped_in_while_a_genuine_zip_unpacks_is_never_placed(
    shared, tmp_path, demo_secrets, monkeypatch
):
    """As `nobody`, once the genuine AES delivery is decrypted: replace the unpack folder (any
    `.unpacking-*` in the inbox, or under the state folder if it could reach it) with one holding
    its own seed."""
    secrets, _ = shared
    evil = secrets.parent / "evil-seed.sql"
    evil.write_bytes(b"-- PostgreSQL database dump\n-- the attacker's patients\n")
    evil.chmod(0o644)
    build_zip(secrets / "inbox" / "delivery.zip", demo_entries(demo_secrets, [LEGACY_SEED_FILE]))
    settings = settings_for(secrets, tmp_path)
    state = settings.paths.state_dir
    swap = (
        f"cd {secrets}/inbox; for d in .unpacking-* {state}/inbox-unpacking/*; do "
        '[ -d "$d" ] || continue; mv "$d" "$d.gone" 2>/dev/null || continue; '
        f'mkdir "$d" && cp {evil} "$d/0"; done; true'
    )
    reading = inbox_module._reading

    def reading_then_swap(entry):
        with reading(entry):
            yield
        as_nobody(swap)  # the entry is decrypted and written: the race is now

    monkeypatch.setattr(inbox_module, "_reading", contextlib.contextmanager(reading_then_swap))
    (result,) = unpack_inbox(settings)
    placed = (secrets / LEGACY_SEED_FILE).read_bytes()
    genuine = (demo_secrets / LEGACY_SEED_FILE).read_bytes()
    assert placed == genuine, result.line()
    log = (settings.paths.artifacts_dir / "parity-manual/db-restore/investigation.log").read_text()
    assert f"{hashlib.sha256(placed).hexdigest()}  {LEGACY_SEED_FILE}" in log  # as placed


# Class 3: the inbox's own files, prepared by the drop-box account as links.
def test_an_inbox_lock_planted_as_a_link_creates_nothing_elsewhere(shared, tmp_path):
    """As `nobody`: `inbox/.lock` a link to a path elsewhere (root would create the file)."""
    secrets, victim = shared
    target = victim / "created-by-root"
    as_nobody(f"ln -s {target} {secrets}/inbox/.lock")
    results = unpack_inbox(settings_for(secrets, tmp_path))
    assert not os.path.lexists(target)
    assert [r.status for r in results] == ["failed"] and ".lock" in results[0].detail


@pytest.mark.parametrize("folder", ["refused", "done"])
def test_inbox_folders_planted_as_links_receive_nothing(folder, shared, tmp_path, demo_secrets):
    """As `nobody`: `inbox/refused` or `inbox/done` a link to a root-only folder elsewhere, and
    a ZIP dropped whose name chooses the file root would write there."""
    secrets, victim = shared
    as_nobody(f"ln -s {victim} {secrets}/inbox/{folder}")
    entries = {"x": b"not a baseline file"} if folder == "refused" else {}
    entries = entries or demo_entries(demo_secrets, [LEGACY_SEED_FILE])
    build_zip(secrets / "inbox" / "chosen-name.zip", entries)
    (secrets / "inbox" / "chosen-name.zip").chmod(0o644)
    (result,) = unpack_inbox(settings_for(secrets, tmp_path))
    assert result.status == "failed", result.line()
    assert list(victim.iterdir()) == []
    assert (secrets / "inbox" / "chosen-name.zip").is_file()  # stays for a person to look at


def test_a_zip_that_is_a_link_is_set_aside_without_reading_what_it_points_at(shared, tmp_path):
    """As `nobody`: `inbox/x.zip` a link to a root-only file (its sha256 in investigation.log
    would tell whether it holds a guessed content)."""
    secrets, victim = shared
    secret = victim / "root-only.txt"
    secret.write_text("only root may read this\n")
    secret.chmod(0o600)
    as_nobody(f"ln -s {secret} {secrets}/inbox/x.zip")
    settings = settings_for(secrets, tmp_path)
    (result,) = unpack_inbox(settings)
    assert result.status == "refused" and "not a regular file" in result.detail
    log = (settings.paths.artifacts_dir / "parity-manual/db-restore/investigation.log").read_text()
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in log
    assert secret.read_text() == "only root may read this\n"


# Class 4: a FIFO swapped in for a vetted file, while the restore holds every table.
def test_a_fifo_swapped_in_after_vetting_stops_the_restore_at_once(shared, tmp_path, settings):
    """As `nobody`, after intake hashed the seed: the seed replaced by a FIFO no one writes."""
    secrets, _ = shared
    folder = secrets / "legacy-server" / "db-baseline"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # the Secrets writer's folder
    dump = fed(secrets, LEGACY_SEED_FILE, "SELECT 1;\n")
    as_nobody(f"rm {dump.path} && mkfifo -m 666 {dump.path}")
    before = database_fingerprint()
    outcome: list[BaseException | None] = []

    def restore() -> None:
        try:
            run(tmp_path, [dump])
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=restore)
    worker.start()
    worker.join(timeout=30)
    hung = worker.is_alive()
    if hung:  # the old feeder: blocked in open(); a writer lets it go on, so the session ends
        os.close(os.open(dump.path, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
    assert not hung, "the feeder blocked opening the FIFO, with the target's tables locked"
    assert isinstance(outcome[0], PsqlError) and "not a regular file" in str(outcome[0])
    assert database_fingerprint() == before


def test_a_crafted_schema_file_cannot_stall_the_missing_objects_report():
    """A schema file of tens of thousands of unterminated `CREATE TABLE d_document (` lines
    (it passes intake: comments): the report's search for a baseline column reads the file
    once, not once per line (176 kB took 11 s, and the time grew with the square)."""
    code = (
        "from restore_assets.runbook.reports import origin\n"
        "text = '-- CREATE TABLE d_document (\\n' * 80_000\n"
        "print(origin('column', 'd_document.admflag', text, 'schema.sql', []))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "unknown: neither the baseline nor a migration creates it" in done.stdout


def test_a_name_chosen_by_a_writer_never_adds_a_line_to_a_refusal():
    """A file or folder the one rule refuses is named in messages (CLI, Dagster, the inbox's
    results): a ZIP's name with a newline stays one line."""
    from restore_assets.files import NotSafe

    said = str(NotSafe("delivery.zip\n# 2099-01-01T00:00:00Z inbox/forged.zip unpacked", "a link"))
    assert "\n" not in said and "forged.zip" in said
