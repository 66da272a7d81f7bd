"""Encrypted intake (runbook §0): real ZIPs built with pyzipper from the demo Secrets, unpacked
into a private Secrets store; each bad archive refused with nothing extracted."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import pyzipper
from pyzipper.zipfile import _gen_crc
from pyzipper.zipfile_aes import AESZipInfo, BaseZipEncrypter

from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.runbook.inbox import Limits, unpack_inbox
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE, Settings, load_settings
from restore_assets_tests.conftest import run_cli

PASSWORD = "Zip-pw-4Hv!q8-never-print"
ALL_FILES = [relpath for files in SIDE_FILES.values() for relpath in files]
_CRC_TABLE = [_gen_crc(i) for i in range(256)]


class ZipCryptoEncrypter(BaseZipEncrypter):
    """Traditional PKWARE ("ZipCrypto") encryption: pyzipper reads it but only writes AES, so
    the test plugs this writer into pyzipper's own archive writer."""

    def __init__(self, password: bytes):
        self.keys = [305419896, 591751049, 878082192]
        for byte in password:
            self._update(byte)

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = (k0 >> 8) ^ _CRC_TABLE[(k0 ^ byte) & 0xFF]
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = (k2 >> 8) ^ _CRC_TABLE[(k2 ^ (k1 >> 24)) & 0xFF]
        self.keys = [k0, k1, k2]

    def update_zipinfo(self, zipinfo):
        zipinfo.flag_bits |= 0x08  # data descriptor: the password check byte is the time's
        self.check_byte = (zipinfo.get_dostime() >> 8) & 0xFF

    def finalize_zipinfo(self, zipinfo):
        pass

    def encryption_header(self):
        return self.encrypt(os.urandom(11) + bytes([self.check_byte]))

    def encrypt(self, data):
        out = bytearray()
        for byte in data:
            k = self.keys[2] | 2
            out.append(byte ^ (((k * (k ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


class ZipCryptoFile(pyzipper.AESZipFile):
    def get_encrypter(self):
        return ZipCryptoEncrypter(self.pwd)


def build_zip(path: Path, entries: dict, method: str = "aes", password: str = PASSWORD) -> Path:
    """A ZIP of `entries` (name → bytes, or a ZipInfo → bytes for odd entries)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if method == "aes":
        archive = pyzipper.AESZipFile(path, "w", pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES)
    elif method == "zipcrypto":
        archive = ZipCryptoFile(path, "w", pyzipper.ZIP_DEFLATED, encryption="zipcrypto")
    else:
        archive = pyzipper.AESZipFile(path, "w", pyzipper.ZIP_DEFLATED)  # not encrypted
    with archive:
        if method != "plain":
            archive.setpassword(password.encode())
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def demo_entries(demo_secrets: Path, names=ALL_FILES, bare=False) -> dict[str, bytes]:
    return {(Path(rel).name if bare else rel): (demo_secrets / rel).read_bytes() for rel in names}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path, artifacts_dir) -> Path:
    """An empty Secrets store with an inbox."""
    root = tmp_path / "Secrets"
    (root / "inbox").mkdir(parents=True)
    return root


def inbox_settings(store: Path, artifacts_dir: Path, **variables: str | None) -> Settings:
    """What the core is given: settings built from an explicit mapping (this store, the ZIP
    password, and any other variable a test names), never from the environment."""
    given = {
        "SECRETS_DIR": str(store),
        "SECRETS_ZIP_PASSWORD": PASSWORD,
        "RESTORE_ARTIFACTS_DIR": str(artifacts_dir),
        "RESTORE_STATE_DIR": str(store.parent / "state"),
    }
    return load_settings({**given, **variables})


@pytest.fixture
def settings_of(store, artifacts_dir):
    return lambda **variables: inbox_settings(store, artifacts_dir, **variables)


@pytest.fixture
def store_in_environment(store, monkeypatch) -> Path:
    """The store and the ZIP password in the environment: for the CLI and the sensor, which
    read the settings as a user's process does."""
    monkeypatch.setenv("SECRETS_DIR", str(store))
    monkeypatch.setenv("SECRETS_ZIP_PASSWORD", PASSWORD)
    return store


def written_files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def assert_password_absent(*roots: Path) -> None:
    for path in written_files(*roots):
        assert PASSWORD.encode() not in path.read_bytes(), path


def investigation_log(artifacts_dir: Path) -> Path:
    return artifacts_dir / "parity-manual" / "db-restore" / "investigation.log"


@pytest.mark.parametrize("method, bare", [("aes", False), ("zipcrypto", True)])
def test_an_encrypted_zip_is_unpacked_into_place(
    store, demo_secrets, artifacts_dir, method, bare, settings_of
):
    build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets, bare=bare), method)
    (result,) = unpack_inbox(settings_of())
    assert result.status == "unpacked", result.detail
    assert result.files == sorted(ALL_FILES)
    for rel in ALL_FILES:
        placed = store / rel
        assert placed.read_bytes() == (demo_secrets / rel).read_bytes()
        assert stat.S_IMODE(placed.stat().st_mode) == 0o600
        assert stat.S_IMODE(placed.parent.stat().st_mode) == 0o700
    assert not (store / "inbox" / "delivery.zip").exists()
    done = store / "inbox" / "done" / "delivery.zip"
    log = investigation_log(artifacts_dir)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    lines = log.read_text().splitlines()
    for rel in ALL_FILES:  # the runbook's `shasum -a 256` lines
        assert f"{sha256((demo_secrets / rel).read_bytes())}  {rel}" in lines
    assert f"{sha256(done.read_bytes())}  inbox/done/delivery.zip" in lines
    # what lands is a usable delivery, as intake sees it
    from restore_assets.runbook.intake import SecretsStore

    assert all(f.usable for f in SecretsStore(settings_of().paths).inspect_all())
    assert_password_absent(store, artifacts_dir)


def test_identical_files_already_in_place_are_fine_and_a_reused_name_is_kept(
    store, demo_secrets, artifacts_dir, settings_of
):
    build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets))
    assert unpack_inbox(settings_of())[0].status == "unpacked"
    schema = store / LEGACY_SCHEMA_FILE
    before = schema.stat().st_ino
    build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets, [LEGACY_SCHEMA_FILE]))
    (again,) = unpack_inbox(settings_of())
    assert again.status == "unpacked" and again.files == [LEGACY_SCHEMA_FILE]
    assert schema.stat().st_ino == before  # identical: left as it was
    assert sorted(p.name for p in (store / "inbox" / "done").iterdir()) == [
        "delivery-2.zip",
        "delivery.zip",
    ]


def _slip(demo):
    return {"../escaped.sql": b"x"}


def _absolute(demo):
    return {"/tmp/escaped.sql": b"x"}


def _symlink(demo):
    link = AESZipInfo(LEGACY_SCHEMA_FILE)
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return {link: b"/etc/passwd"}


def _unknown(demo):
    return {**demo_entries(demo, [LEGACY_SCHEMA_FILE]), "legacy-server/db-baseline/notes.txt": b""}


def _bomb(demo):
    return {LEGACY_SEED_FILE: b"\0" * (40 << 20)}  # 40 MiB of zeros: ~1000:1


BAD_ARCHIVES = {
    "zip-slip ..": (_slip, "aes", "zip-slip"),
    "zip-slip absolute": (_absolute, "aes", "zip-slip"),
    "symlink entry": (_symlink, "aes", "symbolic link"),
    "unknown name": (_unknown, "aes", "is not a baseline file"),
    "zip bomb (ratio)": (_bomb, "aes", "zip bomb"),
    "not encrypted": (lambda demo: demo_entries(demo), "plain", "not encrypted"),
}


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_a_bad_archive_is_refused_with_nothing_extracted(store, demo_secrets, artifacts_dir, case):
    entries, method, message = BAD_ARCHIVES[case]
    build_zip(store / "inbox" / "bad.zip", entries(demo_secrets), method)
    assert_refused(store, artifacts_dir, message)


@pytest.mark.parametrize("method", ["aes", "zipcrypto"])
def test_a_wrong_password_is_refused(store, demo_secrets, artifacts_dir, method):
    build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets), method, "other password")
    # ZipCrypto's one check byte lets 1 wrong password in 256 through: the damage it then
    # does is refused too, and the message says a wrong password may be why.
    assert_refused(store, artifacts_dir, "wrong password")


@pytest.mark.parametrize("method", ["aes", "zipcrypto"])
def test_a_truncated_or_corrupt_archive_is_refused(store, demo_secrets, artifacts_dir, method):
    path = build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets), method)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(store, artifacts_dir, "corrupt or truncated")

    # One flipped byte inside the seed, the second entry: the first was already extracted into
    # the scratch folder when the damage shows, and still nothing lands.
    path = build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets), method)
    with pyzipper.AESZipFile(path) as archive:
        seed = archive.getinfo(LEGACY_SEED_FILE)
    data = bytearray(path.read_bytes())
    data[seed.header_offset + 30 + len(seed.filename) + 11 + seed.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_refused(store, artifacts_dir, "fails its integrity check", name="bad-2.zip")


def test_a_compression_method_that_cannot_be_read_is_refused(store, demo_secrets, artifacts_dir):
    path = build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets), "zipcrypto")
    data = bytearray(path.read_bytes())
    with pyzipper.AESZipFile(path) as archive:
        local = archive.infolist()[0].header_offset
    central = data.index(b"PK\x01\x02")
    data[local + 8 : local + 10] = data[central + 10 : central + 12] = (9).to_bytes(2, "little")
    path.write_bytes(bytes(data))  # the first entry now claims Deflate64
    assert_refused(store, artifacts_dir, "cannot be read here")


def test_more_than_the_total_limit_is_a_bomb(store, demo_secrets, artifacts_dir, settings_of):
    build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets))
    limits = replace(Limits.of(settings_of().intake), max_total_bytes=10_000)
    assert_refused(store, artifacts_dir, "zip bomb", limits)


def test_the_bomb_limits_are_settings(store, demo_secrets, artifacts_dir, settings_of):
    """RESTORE_ZIP_MAX_RATIO and RESTORE_ZIP_MAX_MIB: 40 MiB of zeros (about 1000:1) passes a
    ratio of 2000:1, then fails a total of 39 MiB."""
    build_zip(store / "inbox" / "zeros.zip", _bomb(demo_secrets))
    (result,) = unpack_inbox(settings_of(RESTORE_ZIP_MAX_RATIO="2000"))
    assert result.status == "unpacked", result.detail
    (store / LEGACY_SEED_FILE).unlink()
    build_zip(store / "inbox" / "bad.zip", _bomb(demo_secrets))
    both = settings_of(RESTORE_ZIP_MAX_RATIO="2000", RESTORE_ZIP_MAX_MIB="39")
    assert_refused(store, artifacts_dir, "zip bomb", settings=both)


def test_different_content_in_place_is_never_overwritten(
    store, demo_secrets, artifacts_dir, settings_of
):
    existing = store / LEGACY_SCHEMA_FILE
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"-- an older delivery\n")
    build_zip(store / "inbox" / "bad.zip", demo_entries(demo_secrets))
    (result,) = unpack_inbox(settings_of())
    assert result.status == "refused" and "different content" in result.detail
    assert existing.read_bytes() == b"-- an older delivery\n"
    assert [p for p in written_files(store) if "inbox" not in p.parts] == [existing]


def assert_refused(store, artifacts_dir, message, limits=None, name="bad.zip", settings=None):
    settings = settings or inbox_settings(store, artifacts_dir)
    (result,) = unpack_inbox(settings, limits=limits)
    assert result.status == "refused" and message in result.detail, result.detail
    inbox = store / "inbox"
    assert [p.name for p in inbox.iterdir() if p.suffix == ".zip"] == []
    refused = inbox / "refused" / name
    assert refused.is_file()
    reason = refused.with_name(name + ".reason.txt").read_text()
    assert message in reason
    # nothing extracted, no scratch left behind
    assert [p for p in written_files(store) if "inbox" not in p.parts] == []
    assert not list((store.parent / "state" / "inbox-unpacking").iterdir())
    assert f"inbox/refused/{name}" in investigation_log(artifacts_dir).read_text()
    assert_password_absent(store, artifacts_dir)


def test_a_zip_still_arriving_waits_and_a_missing_password_keeps_it(
    store, demo_secrets, monkeypatch, settings_of
):
    zip_path = build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets))
    (first,) = unpack_inbox(settings_of(), previous={})
    assert first.status == "waiting" and "still arriving" in first.detail
    without = settings_of(SECRETS_ZIP_PASSWORD=None)
    (nopw,) = unpack_inbox(without, previous={first.name: first.seen})
    assert nopw.status == "waiting" and "SECRETS_ZIP_PASSWORD is not set" in nopw.detail
    assert zip_path.exists()
    monkeypatch.setenv("SECRETS_DIR", str(store))  # the CLI reads the environment
    result = run_cli("intake-zip")
    assert result.returncode == 3 and "SECRETS_ZIP_PASSWORD" in result.stderr
    (done,) = unpack_inbox(settings_of(), previous={first.name: first.seen})
    assert done.status == "unpacked"


def test_the_cli_unpacks_by_hand_and_exits_2_on_a_refusal(
    store_in_environment, demo_secrets, artifacts_dir
):
    store = store_in_environment
    assert run_cli("intake-zip").stdout.startswith("no ZIP in ")
    build_zip(store / "inbox" / "a.zip", demo_entries(demo_secrets))
    build_zip(store / "inbox" / "b.zip", _slip(demo_secrets))
    result = run_cli("intake-zip")
    assert result.returncode == 2, result
    assert "inbox/a.zip: unpacked: 3 file(s) in place" in result.stdout
    assert "inbox/b.zip: refused: entry '../escaped.sql' leaves its folder" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert_password_absent(store, artifacts_dir)


def test_the_sensor_unpacks_a_dropped_zip_then_restores_both_sides(
    store_in_environment, demo_secrets, artifacts_dir
):
    store = store_in_environment
    from restore_assets_tests.test_sensor import Watcher

    build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets))
    watcher = Watcher()
    requests, reason = watcher.tick()  # the ZIP just appeared: it may still be arriving
    assert requests == [] and "inbox/delivery.zip: new or still arriving" in reason
    requests, reason = watcher.tick()  # settled: the intake run unpacks it, not the tick
    assert [job for job, _ in requests] == ["secrets_intake"], reason
    (intake,) = watcher.results
    assert intake.success and (store / "inbox" / "done" / "delivery.zip").exists()
    requests, reason = watcher.tick()  # unpacked: the files themselves are new
    assert requests == [] and "still changing or new" in reason
    requests, _ = watcher.tick()  # settled files: the whole chain
    assert [job for job, _ in requests] == ["restore_all"]
    root = artifacts_dir / "parity-manual" / "db-restore"
    said = (root / "baseline_search.log").read_text()
    assert "inbox/delivery.zip: settled; the intake run unpacks it" in said
    assert "delivery.zip unpacked" in (root / "investigation.log").read_text()
    assert_password_absent(store, artifacts_dir)
    assert PASSWORD not in watcher.cursor


def test_one_unpack_at_a_time_and_a_killed_ones_scratch_is_cleared(
    store, demo_secrets, settings_of
):
    import fcntl

    build_zip(store / "inbox" / "delivery.zip", demo_entries(demo_secrets))
    leftover = store.parent / "state" / "inbox-unpacking" / "killed"  # private, not in the inbox
    leftover.mkdir(parents=True, mode=0o700)
    (leftover / "0").write_bytes(b"half a file")
    with open(store / "inbox" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # e.g. `intake-zip` by hand while the sensor looks
        (busy,) = unpack_inbox(settings_of())
        assert busy.line() == "inbox: waiting: another unpack holds the inbox; next look"
    assert (store / "inbox" / "delivery.zip").exists()
    (result,) = unpack_inbox(settings_of())
    assert result.status == "unpacked" and not leftover.exists()
