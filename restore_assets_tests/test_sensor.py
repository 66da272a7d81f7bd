"""The Secrets sensor across ticks (`build_sensor_context`, cursor carried from tick to tick)."""

from __future__ import annotations

import shutil
import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

from restore_assets.definitions import defs
from restore_assets.errors import ConfigError
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.sensors import secrets_sensor
from restore_assets.settings import DEFAULT_TARGET, LEGACY_SEED_FILE, MODERN_SCHEMA_FILE
from restore_assets_tests.helpers import target_instance

pytestmark = pytest.mark.slow  # sensor ticks that launch real Dagster runs


class Watcher:
    """Ticks the sensor like the daemon does: same instance, the cursor handed on, and each
    request with a run key not seen before launched for real (the daemon drops repeated keys)."""

    def __init__(self, instance=None):
        self.instance = instance or DagsterInstance.ephemeral()
        self.cursor = None
        self.run_keys: set[str] = set()
        self.results = []

    def tick(self, launch: bool = True):
        result = self.look()
        self.cursor = result.cursor
        requests = [(r.job_name, r.run_key) for r in result.run_requests or []]
        for request in result.run_requests or []:
            if launch and request.run_key not in self.run_keys:
                self.run_keys.add(request.run_key)
                self.results.append(launch_request(self.instance, request))
        reason = result.skip_reason.skip_message if result.skip_reason else ""
        return requests, reason

    def look(self):
        """One evaluation; the targets it registers are added as the daemon adds them."""
        with build_sensor_context(instance=self.instance, cursor=self.cursor) as context:
            result = secrets_sensor(context)
        for added in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(added.partitions_def_name, added.partition_keys)
        return result


def launch_request(instance, request):
    """Run a sensor's request as the daemon would: its job, its target, its tags."""
    job = defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        run_config={"resources": {"restore": {"config": {"allow_reset": True}}}},
        raise_on_error=False,
    )


@pytest.fixture
def store(tmp_path, monkeypatch, artifacts_dir):
    root = tmp_path / "Secrets"
    root.mkdir()
    monkeypatch.setenv("SECRETS_DIR", str(root))
    return root


def test_the_sensor_is_in_the_code_location_and_on_by_default():
    sensor = defs.resolve_sensor_def("secrets_sensor")
    assert sensor.default_status.value == "RUNNING"
    assert {j.name for j in sensor.jobs} >= {"restore_all", "restore_legacy", "restore_modernized"}


def test_empty_store_asks_nothing_and_says_what_is_missing(store):
    requests, reason = Watcher().tick()
    assert requests == []
    assert "legacy: " in reason and f"{LEGACY_SEED_FILE} missing" in reason
    assert f"{MODERN_SCHEMA_FILE} missing" in reason


def test_landed_files_are_restored_once_when_settled(store, demo_secrets, artifacts_dir):
    watcher = Watcher()
    watcher.tick()
    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    requests, reason = watcher.tick()  # just landed: not settled yet
    assert requests == [] and "still changing or new" in reason
    requests, _ = watcher.tick()  # unchanged since the last look: the whole chain, once
    assert [job for job, _ in requests] == ["restore_all"]
    requests, reason = watcher.tick()
    assert requests == [] and "up to date" in reason
    assert watcher.tick()[0] == []
    log_path = artifacts_dir / "parity-manual" / "db-restore" / "baseline_search.log"
    assert log_path.stat().st_mode & 0o777 == 0o600
    log = log_path.read_text()
    # one line per change of state: missing, landing, requested, up to date (not per tick)
    assert len(log.splitlines()) == 4 and "requested: restore_all" in log


def test_a_growing_file_or_half_a_side_asks_nothing_for_that_side(store, demo_secrets):
    watcher = Watcher()
    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    watcher.tick()
    with (store / LEGACY_SEED_FILE).open("a") as seed:
        seed.write("-- still arriving\n")
    requests, reason = watcher.tick()
    assert requests == [("restore_modernized", requests[0][1])]  # only the settled side
    assert "legacy: " in reason or reason == ""


def test_changed_content_asks_once_more_and_a_bad_mode_is_named(store, demo_secrets):
    watcher = Watcher()
    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    watcher.tick()
    ((_, first_key),) = watcher.tick()[0]
    modern = store / MODERN_SCHEMA_FILE
    modern.write_text(modern.read_text() + "-- re-delivered\n")
    assert watcher.tick()[0] == []  # changed: wait until it settles
    ((job, key),) = watcher.tick()[0]
    assert job == "restore_modernized" and key != first_key
    modern.chmod(0o644)
    watcher.tick()
    requests, reason = watcher.tick()
    assert requests == [] and "mode 0644" in reason


def _run(instance, job_name):
    from dagster import DagsterEventType

    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=instance,
        partition_key=DEFAULT_TARGET,
        run_config={"resources": {"restore": {"config": {"allow_reset": True}}}},
        raise_on_error=False,
    )
    assert result.success
    (event,) = [e for e in result.all_events if e.event_type == DagsterEventType.RUN_SUCCESS]
    return result.dagster_run, event


def _followup(instance, run, event):
    from dagster import build_run_status_sensor_context

    from restore_assets.sensors import followup_sensor

    context = build_run_status_sensor_context(
        sensor_name="followup_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=event,
    )
    return followup_sensor(context)


def test_one_side_restored_again_brings_the_sync_and_gates(secrets_dir, artifacts_dir):
    from dagster import RunRequest, SkipReason

    instance = target_instance()
    first = _followup(instance, *_run(instance, "restore_legacy"))
    assert isinstance(first, SkipReason) and "never restored" in first.skip_message
    _run(instance, "restore_modernized")
    again = _followup(instance, *_run(instance, "restore_legacy"))
    assert isinstance(again, RunRequest)
    followup = defs.resolve_job_def("restore_followup")
    keys = {k.to_user_string() for k in followup.asset_layer.executable_asset_keys}
    assert keys == {
        "sync/facility_users",
        "reports/ddl_inventory",
        "reports/missing_objects",
        "gates/report",
    }
    assert _run(instance, "restore_followup")[0].is_success


def test_named_targets_are_watched_each_in_its_own_sub_root(
    store, demo_secrets, tmp_path, monkeypatch, artifacts_dir
):
    (tmp_path / "targets.yaml").write_text(
        "targets:\n"
        "  clinic-a: {secrets_dir: clinic-a, legacy: {db: s_a}, modernized: {db: s_a_m}}\n"
        "  clinic-b: {secrets_dir: clinic-b, legacy: {db: s_b}, modernized: {db: s_b_m}}\n"
    )
    monkeypatch.setenv("RESTORE_TARGETS", str(tmp_path / "targets.yaml"))
    watcher = Watcher()
    watcher.tick()
    shutil.copytree(demo_secrets, store / "clinic-a")
    assert watcher.tick()[0] == []  # landed, not settled yet
    result = watcher.look()
    (request,) = result.run_requests
    assert request.job_name == "restore_all" and request.run_key.startswith("clinic-a:")
    assert request.partition_key == "clinic-a"
    assert watcher.instance.get_dynamic_partitions("targets") == ["clinic-a", "clinic-b"]
    watcher.cursor = result.cursor
    assert launch_request(watcher.instance, request).success
    requests, reason = watcher.tick()
    assert requests == []
    assert "[clinic-a] watching" in reason and "up to date" in reason
    assert f"[clinic-b] watching {store / 'clinic-b'}" in reason
    logs = artifacts_dir / "parity-manual" / "db-restore"
    assert "requested: restore_all" in (logs / "clinic-a" / "baseline_search.log").read_text()
    assert "requested" not in (logs / "clinic-b" / "baseline_search.log").read_text()


def test_a_bad_interval_is_named_by_every_tick(store, monkeypatch):
    """The code location loaded with the default (test_definitions); the sensor then says what
    is wrong in the same line as the CLI, from `.env` too."""
    dotenv = store.parent / "custom.env"
    dotenv.write_text("RESTORE_SENSOR_INTERVAL_SECONDS=abc\n")
    monkeypatch.setenv("RESTORE_DOTENV", str(dotenv))
    with pytest.raises(ConfigError) as refused:
        Watcher().tick()
    assert str(refused.value) == (
        "RESTORE_SENSOR_INTERVAL_SECONDS='abc' is not a number of seconds (1 or more)"
    )


def _settle(watcher):
    """Two looks: the files are seen, then seen unchanged."""
    watcher.tick()
    return watcher.tick()


def test_a_fresh_sensor_does_not_restore_again_what_the_cli_just_restored(
    secrets_dir, artifacts_dir
):
    """`make demo`, then `make ui`: the sensor's cursor is new, the instance is the CLI's."""
    from restore_assets_tests.conftest import run_cli

    assert run_cli("run").returncode == 0
    watcher = Watcher(DagsterInstance.get())  # the instance the CLI recorded its run in
    requests, reason = _settle(watcher)
    (run,) = watcher.instance.get_runs(limit=1)
    assert requests == [], reason
    for side in ("legacy", "modernized"):
        assert f"{side}: up to date (content " in reason and f"by run {run.run_id[:8]})" in reason


def test_content_whose_restore_failed_is_not_up_to_date_nor_retried_by_itself(
    secrets_dir, artifacts_dir
):
    from restore_assets_tests.test_failure_matrix import between_copy_blocks

    seed = secrets_dir / LEGACY_SEED_FILE
    good = seed.read_bytes()
    between_copy_blocks(seed, "INSERT INTO public.d_facility (id) VALUES (NULL);")
    watcher = Watcher()
    requests, _ = _settle(watcher)
    assert [job for job, _ in requests] == ["restore_all"]
    (failed,) = watcher.results
    assert not failed.success
    requests, reason = watcher.tick()
    assert requests == [] and "up to date" not in reason, reason
    assert f"failed in run {failed.run_id[:8]} and is not retried by itself" in reason
    assert watcher.tick()[0] == []  # not on the next look either
    seed.write_bytes(good)  # corrected files delivered: a new content, restored
    requests, _ = _settle(watcher)
    assert [job for job, _ in requests] == ["restore_all"] and watcher.results[-1].success


def test_content_put_back_to_an_earlier_one_is_restored_again(secrets_dir, artifacts_dir):
    """A, then B, then A again: the target must end holding A."""
    modern = secrets_dir / MODERN_SCHEMA_FILE
    a = modern.read_bytes()
    watcher = Watcher()
    assert [job for job, _ in _settle(watcher)[0]] == ["restore_all"]
    modern.write_bytes(a + b"-- B\n")
    assert [job for job, _ in _settle(watcher)[0]] == ["restore_modernized"]
    modern.write_bytes(a)
    requests, reason = _settle(watcher)
    assert [job for job, _ in requests] == ["restore_modernized"], reason
    assert all(result.success for result in watcher.results) and len(watcher.results) == 3
    first, _, last = (
        r.dagster_run.tags["restore_assets/content.modernized"] for r in watcher.results
    )
    assert last == first  # the target holds A again
    assert "modernized: up to date" in watcher.tick()[1]


def _crash_tags(watcher: Watcher) -> tuple[str, dict[str, str]]:
    """The job and the restore tags of the first request (not launched): what a run of it
    carries once queued."""
    from restore_assets.assets.shell import restore_tags

    watcher.tick()
    ((job, run_key),) = watcher.tick(launch=False)[0]
    # default:restore_all:<legacy>|<modernized>:…
    legacy, modernized = run_key.split(":")[2].split("|")
    tags = restore_tags("legacy", DEFAULT_TARGET, legacy)
    return job, tags | restore_tags("modernized", DEFAULT_TARGET, modernized)


def _started(watcher: Watcher, job: str, tags: dict[str, str]):
    return watcher.instance.create_run_for_job(
        defs.resolve_job_def(job), tags=tags, status=DagsterRunStatus.STARTED
    )


@pytest.mark.parametrize("retries", [2, 0])
def test_a_crashed_restore_is_requested_again_as_often_as_RESTORE_CRASH_RETRIES(
    secrets_dir, artifacts_dir, monkeypatch, retries
):
    """A run whose process died (what `recovery.free_dead_runs` leaves: failed, no step failed)
    is requested again, each retry tagged with its number and bounded by the maximum runtime;
    once this content's runs died RESTORE_CRASH_RETRIES + 1 times in a row it is left failed,
    saying so. `_watch` hands each crash and its outcome to `crashes_seen` (the notifications'
    hook)."""
    from restore_assets.sensors import _watch, last_restore
    from restore_assets.settings import load_settings

    monkeypatch.setenv("RESTORE_CRASH_RETRIES", str(retries))
    monkeypatch.setenv("RESTORE_MAX_RUNTIME_SECONDS", "600")
    watcher = Watcher()
    job, tags = _crash_tags(watcher)
    for crash in range(1, retries + 2):
        run = _started(watcher, job, tags)
        watcher.instance.report_run_failed(run, "its process is gone")
        last = last_restore(watcher.instance, "legacy", DEFAULT_TARGET)
        assert (last.state, last.crashes) == ("crashed", crash)
        result = watcher.look()
        watcher.cursor = result.cursor
        *_, died = _watch(watcher.instance, load_settings(), _cursor_state(watcher))
        assert [(c.run_id, c.attempt, c.max_retries) for c in died] == [
            (run.run_id, crash, retries)
        ]
        if crash <= retries:
            (request,) = result.run_requests
            assert request.job_name == "restore_all" and died[0].retried
            said = request.tags["restore_assets/crash_retry"]
            assert f"run {run.run_id[:8]}" in said and f"retry {crash} of {retries}" in said
            assert request.tags["dagster/max_runtime"] == "600"
        else:
            reason = result.skip_reason.skip_message
            assert not result.run_requests and not died[0].retried, reason
            assert f"{crash} time(s) in a row" in reason
            assert f"not retried any more (RESTORE_CRASH_RETRIES={retries})" in reason


def _cursor_state(watcher: Watcher):
    import json

    from restore_assets.runbook.watch import WatchState

    return WatchState.from_json(json.loads(watcher.cursor)["targets"][DEFAULT_TARGET])


def test_a_failed_gate_is_not_retried(secrets_dir, artifacts_dir, monkeypatch):
    """A run that restored both sides but failed a gate (the facility API probe of db_restore
    gets a refused connection) failed for a reason: not a crash, not requested again."""
    from restore_assets.sensors import ended_as
    from restore_assets_tests.helpers import free_port

    monkeypatch.setenv("RESTORE_FACILITY_API_URL", f"http://127.0.0.1:{free_port()}/health")
    watcher = Watcher()
    requests, _ = _settle(watcher)
    assert [job for job, _ in requests] == ["restore_all"]
    (failed,) = watcher.results
    assert not failed.success
    gates = [e for e in failed.get_asset_check_evaluations() if e.check_name == "db_restore"]
    assert gates and not gates[-1].passed
    assert ended_as(watcher.instance, failed.dagster_run) == "failed"
    requests, reason = watcher.tick()
    assert requests == [] and f"failed in run {failed.run_id[:8]}" in reason, reason
    assert watcher.tick()[0] == []


def test_a_run_stopped_over_its_maximum_runtime_is_not_retried(secrets_dir, artifacts_dir):
    """What run monitoring does to a run over `dagster/max_runtime`: "canceling", then failed
    at once, before the run's step has even seen the interrupt (so no step failed yet). That
    is a stop, not a crash: the same files are not requested again."""
    from restore_assets.sensors import last_restore

    watcher = Watcher()
    job, tags = _crash_tags(watcher)
    run = _started(watcher, job, tags)
    watcher.instance.report_run_canceling(run, "Canceling due to exceeding maximum runtime")
    watcher.instance.report_run_failed(run, "Exceeded maximum runtime of 20 seconds.")
    assert last_restore(watcher.instance, "legacy", DEFAULT_TARGET).state == "stopped"
    requests, reason = watcher.tick(launch=False)
    assert requests == [], reason
    assert f"run {run.run_id[:8]} was stopped" in reason and "RESTORE_MAX_RUNTIME_SECONDS" in reason


def test_a_large_new_delivery_is_read_by_the_intake_run_not_in_the_tick(
    store, demo_secrets, monkeypatch, artifacts_dir
):
    """Reading (sha256, header, footer) a multi-GB delivery takes longer than a sensor may:
    above `TICK_READ_BYTES` (made small here) the tick asks the intake run to read it."""
    from restore_assets.runbook import watch
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import load_settings

    # Made small: the Legacy files (about 78 kB) exceed it, the Modernized one (16 kB) does not.
    monkeypatch.setattr(watch, "TICK_READ_BYTES", 40_000)
    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    watcher = Watcher()
    watcher.tick()
    requests, reason = watcher.tick(launch=False)
    assert [job for job, _ in requests] == ["secrets_intake"], reason
    log = artifacts_dir / "parity-manual" / "db-restore" / "baseline_search.log"
    assert "legacy: settled; the intake run reads and hashes" in log.read_text()
    files = SIDE_FILES["legacy"]
    unread = SecretsStore(load_settings().paths).unread_bytes(files)
    assert unread == sum((store / f).stat().st_size for f in files)  # the tick read none of it
    assert "modernized: waits for the intake run's read" in log.read_text()  # both go together
    assert watcher.tick()[0] == requests  # asked again, the same key: the daemon drops it
    assert watcher.results[-1].success  # the intake run read them
    assert SecretsStore(load_settings().paths).unread_bytes(files) == 0
    requests, _ = watcher.tick()
    assert [job for job, _ in requests] == ["restore_all"]


def test_the_wrong_slot_check_never_reads_a_large_twin_inside_the_tick(
    store, demo_secrets, monkeypatch, artifacts_dir
):
    """The Legacy seed also copied into the Modernized slot (same size): the Legacy side's look
    would read the twin to compare them, so the tick counts it and leaves both to the intake
    run instead of hashing it itself."""
    from restore_assets.runbook import watch
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import load_settings

    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    shutil.copyfile(store / LEGACY_SEED_FILE, store / MODERN_SCHEMA_FILE)
    legacy_bytes = sum((store / f).stat().st_size for f in SIDE_FILES["legacy"])
    monkeypatch.setattr(watch, "TICK_READ_BYTES", legacy_bytes + 1)  # its own files fit
    watcher = Watcher()
    watcher.tick()
    requests, reason = watcher.tick(launch=False)
    assert [job for job, _ in requests] == ["secrets_intake"], reason
    log = (artifacts_dir / "parity-manual" / "db-restore" / "baseline_search.log").read_text()
    assert "legacy: settled; the intake run reads and hashes" in log, log
    twin = SecretsStore(load_settings().paths).unread_bytes([MODERN_SCHEMA_FILE])
    assert twin == (store / MODERN_SCHEMA_FILE).stat().st_size  # the tick read none of it


def test_a_run_a_person_stopped_is_not_started_again(secrets_dir, artifacts_dir):
    """Terminate in the UI (canceled), or SIGINT/SIGTERM (interrupted): the person's stop holds."""
    watcher = Watcher()
    watcher.tick()
    ((job, _),) = watcher.tick(launch=False)[0]
    run = watcher.instance.create_run_for_job(
        defs.resolve_job_def(job), tags=_requested_tags(watcher), status=DagsterRunStatus.STARTED
    )
    watcher.instance.report_run_canceled(run, "Terminate, in the UI")
    requests, reason = watcher.tick(launch=False)
    assert requests == [], reason
    assert f"run {run.run_id[:8]} was stopped (interrupted, canceled" in reason


def test_a_queued_run_from_the_ui_counts_before_it_tags_itself(secrets_dir, artifacts_dir):
    """ "Materialize all" queued (no tags of ours yet): the sensor waits instead of asking twice."""
    watcher = Watcher()
    job = defs.resolve_implicit_global_asset_job_def()
    queued = watcher.instance.create_run_for_job(
        job,
        asset_selection=frozenset(job.asset_layer.executable_asset_keys),
        tags={"dagster/partition": DEFAULT_TARGET},  # the UI launches for a target
        status=DagsterRunStatus.NOT_STARTED,  # created by the UI, not started yet
    )
    watcher.tick()
    requests, reason = watcher.tick(launch=False)
    assert requests == [], reason
    assert f"legacy: a restore is under way (run {queued.run_id[:8]})" in reason


def test_runs_recorded_before_runs_were_tagged_still_count(secrets_dir, artifacts_dir):
    """An instance from before restore steps tagged their runs: each side's last
    materialization (its `inputs` table: the files' sha256) says what it restored, so the
    first `make ui` after an upgrade does not restore everything again."""
    from dagster import AssetMaterialization, DagsterEvent, DagsterEventType
    from dagster._core.events import StepMaterializationData  # the test forges an old run

    from restore_assets.assets.shell import RESTORE_KEYS, table
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import load_settings

    watcher = Watcher()
    old = watcher.instance.create_run_for_job(
        defs.resolve_job_def("restore_all"), status=DagsterRunStatus.SUCCESS
    )
    store = SecretsStore(load_settings().paths)
    for side, key in RESTORE_KEYS.items():  # what such a run recorded, and nothing else
        inputs = table([f.as_evidence() for f in store.inspect_side(side)])
        data = StepMaterializationData(AssetMaterialization(key, metadata={"inputs": inputs}))
        kind = DagsterEventType.ASSET_MATERIALIZATION.value
        event = DagsterEvent(kind, job_name=old.job_name, event_specific_data=data)
        watcher.instance.report_dagster_event(event, old.run_id)
    watcher.tick()
    requests, reason = watcher.tick(launch=False)
    assert requests == [], reason
    assert "legacy: up to date (content " in reason and f"by run {old.run_id[:8]})" in reason
    assert "modernized: up to date" in reason


def _requested_tags(watcher):
    from restore_assets.assets.shell import restore_tags

    ((_, run_key),) = watcher.tick(launch=False)[0]
    legacy, modernized = run_key.split(":")[2].split("|")
    tags = restore_tags("legacy", DEFAULT_TARGET, legacy)
    return tags | restore_tags("modernized", DEFAULT_TARGET, modernized)


def test_two_intake_runs_reading_at_once_keep_each_others_hashes(store, demo_secrets):
    """Two targets' intake runs read at once: the sha256 cache merges what each added (the last
    writer dropped the other's entries, and the sensor then found those files unread for
    ever: CI's deploy test, north never restored)."""
    import threading

    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import load_settings

    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    seed = store / LEGACY_SEED_FILE
    with seed.open("r+", encoding="utf-8") as out:  # a seed that takes a while to read
        lines = out.read().splitlines(keepends=True)
        at = lines.index("-- PostgreSQL database dump complete\n")
        out.seek(0)
        out.writelines([*lines[:at], "-- padding\n" * 1_500_000, *lines[at:]])
    settings = load_settings()
    slow = threading.Thread(target=SecretsStore(settings.paths).inspect, args=(LEGACY_SEED_FILE,))
    slow.start()
    time.sleep(0.2)  # the slow reader has loaded the cache and is reading
    SecretsStore(settings.paths).inspect(MODERN_SCHEMA_FILE)  # another process's entry, meanwhile
    slow.join()
    unread = SecretsStore(settings.paths).unread_bytes([LEGACY_SEED_FILE, MODERN_SCHEMA_FILE])
    assert unread == 0
