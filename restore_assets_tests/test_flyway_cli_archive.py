"""The Flyway CLI archive is extracted under tarfile's "data" rules on every Python the project
declares (`requires-python >= 3.11`): Python 3.11.4+ has the filter, Debian 12's own 3.11.2
does not and `real_flyway.checked_members` applies the same rules. Each case runs through the
fallback; where the filter exists, through the filter too, with the same outcome expected.
"""

from __future__ import annotations

import io
import os
import platform
import stat
import tarfile
from pathlib import Path

import pytest

from restore_assets_tests.real_flyway import UnsafeMember, checked_members, extract_data_only

HAS_FILTER = hasattr(tarfile, "data_filter")
WAYS = ["checked_members", "data_filter"]


def _archive(path: Path, members: list[tuple[str, str, str, int]]) -> Path:
    """A real .tar.gz: (name, kind, link target or content, mode) per member, in that order."""
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "hard": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, text, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kinds[kind], mode, 4242, 4242
            info.uname = info.gname = "someone"
            data = None
            if kind == "file":
                data = text.encode()
                info.size = len(data)
            elif kind in ("sym", "hard"):
                info.linkname = text
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _extract(way: str, archive: Path, dest: Path) -> None:
    dest.mkdir()
    with tarfile.open(archive) as tar:
        if way == "data_filter":
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest, members=checked_members(tar, dest))


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under root: kind, mode bits and owner (files, folders) or link target."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = ("sym", os.readlink(path))
            else:
                kind = "dir" if path.is_dir() else "file"
                tree[rel] = (kind, oct(stat.S_IMODE(info.st_mode)), info.st_uid)
    return tree


# Absolute link targets name this test's own file ({outside}), never a system file: a broken
# extraction running as root would otherwise chown and chmod e.g. /etc/passwd through the link.
HOSTILE = {
    "dotdot": [("../escaped", "file", "x", 0o644)],
    "dotdot_in_the_middle": [("a/../../escaped", "file", "x", 0o644)],
    "symlink_absolute": [("abs", "sym", "{outside}", 0o777)],
    "symlink_up_and_out": [("up", "sym", "../..", 0o777)],
    # each name checked up front looks inside; x -> . on disk makes x/y -> ../z point out
    "symlink_staged_through_an_earlier_link": [
        ("x", "sym", ".", 0o777),
        ("x/y", "sym", "../z", 0o777),
        ("y/escaped", "file", "x", 0o644),
    ],
    "hardlink_absolute": [("abs", "hard", "{outside}", 0o644)],
    "hardlink_out": [("h", "hard", "../outside", 0o644)],
    "char_device": [("null", "chr", "", 0o666)],
    "fifo": [("pipe", "fifo", "", 0o644)],
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_member_the_data_filter_refuses_is_refused_and_nothing_lands_outside(tmp_path, case, way):
    if way == "data_filter" and not HAS_FILTER:
        pytest.skip(f"Python {platform.python_version()} has no tarfile.data_filter")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").write_text("untouched")
    mode = stat.S_IMODE((tmp_path / "outside").stat().st_mode)
    outside = str(tmp_path / "outside")
    members = [(n, k, text.format(outside=outside), m) for n, k, text, m in HOSTILE[case]]
    archive = _archive(tmp_path / "hostile.tar.gz", members)
    before = _tree(tmp_path)

    with pytest.raises(tarfile.TarError) as refused:
        _extract(way, archive, work / "dest")
    if way == "checked_members":
        assert isinstance(refused.value, UnsafeMember), refused.value

    after = _tree(tmp_path)
    new = {path for path in after if not path.startswith("work/dest")} - set(before)
    assert not new, f"written outside the destination: {new}"
    assert (tmp_path / "outside").read_text() == "untouched"
    assert (tmp_path / "outside").stat().st_nlink == 1, "hard-linked from inside"
    assert stat.S_IMODE((tmp_path / "outside").stat().st_mode) == mode, "chmod through a link"


BENIGN = [
    ("flyway-10/", "dir", "", 0o775),
    ("flyway-10/flyway", "file", "#!/bin/sh\n", 0o775),
    ("flyway-10/conf/flyway.toml", "file", "# conf\n", 0o666),
    ("flyway-10/conf/same.toml", "hard", "flyway-10/conf/flyway.toml", 0o666),
    ("flyway-10/lib", "dir", "", 0o755),
    ("flyway-10/lib/suid", "file", "s", 0o4755),
    ("flyway-10/lib/group-exec-only", "file", "g", 0o070),
    ("flyway-10/bin", "sym", "lib", 0o777),
    ("/flyway-10/rooted", "file", "r", 0o644),
]


@pytest.mark.parametrize("way", WAYS)
def test_an_ordinary_archive_is_extracted_as_the_data_filter_extracts_it(tmp_path, way):
    if way == "data_filter" and not HAS_FILTER:
        pytest.skip(f"Python {platform.python_version()} has no tarfile.data_filter")
    archive = _archive(tmp_path / "ok.tar.gz", BENIGN)
    _extract(way, archive, tmp_path / "dest")
    tree = _tree(tmp_path / "dest")

    me = os.getuid()
    assert tree["flyway-10/flyway"] == ("file", "0o755", me)  # runnable, not group-writable
    assert tree["flyway-10/conf/flyway.toml"] == ("file", "0o644", me)
    assert tree["flyway-10/conf/same.toml"] == ("file", "0o644", me)
    assert tree["flyway-10/lib/suid"] == ("file", "0o755", me)  # the set-uid bit dropped
    assert tree["flyway-10/lib/group-exec-only"] == ("file", "0o640", me)
    assert tree["flyway-10/bin"] == ("sym", "lib")
    assert tree["flyway-10/rooted"] == ("file", "0o644", me)  # `/flyway-10/...` lands inside
    assert os.path.samefile(
        tmp_path / "dest/flyway-10/conf/same.toml", tmp_path / "dest/flyway-10/conf/flyway.toml"
    )
    # Folders: the filter leaves their mode to the umask, the fallback keeps the archive's
    # (less group/other write); both never owned by the archive's uid 4242.
    folders = {path: entry for path, entry in tree.items() if entry[0] == "dir"}
    assert set(folders) == {"flyway-10", "flyway-10/conf", "flyway-10/lib"}
    assert all(entry[2] == me for entry in folders.values()), folders
    if HAS_FILTER:
        reference = tmp_path / "reference"
        _extract("data_filter", archive, reference)
        files = {p: e for p, e in tree.items() if e[0] != "dir"}
        assert files == {p: e for p, e in _tree(reference).items() if e[0] != "dir"}


def test_the_extraction_the_cli_launcher_uses_refuses_a_hostile_archive(tmp_path):
    """extract_data_only itself, whichever way this Python takes."""
    archive = _archive(tmp_path / "hostile.tar.gz", HOSTILE["symlink_up_and_out"])
    with pytest.raises(tarfile.TarError):
        extract_data_only(archive, tmp_path / "dest")
    assert not (tmp_path / "dest" / "up").exists()
