"""The one check that a path stays inside its root (intake's Secrets files, the inbox's folders
on the way, the dumps written): links followed, `..` resolved, a sibling sharing the root's
prefix outside. Pure: a temporary folder, no database."""

from __future__ import annotations

from restore_assets.files import resolves_inside


def test_a_path_is_inside_its_root_only_once_links_and_dots_are_resolved(tmp_path):
    root = tmp_path / "Secrets"
    (root / "legacy").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "legacy" / "out").symlink_to(tmp_path / "elsewhere")
    (root / "legacy" / "in").symlink_to(root / "legacy")

    assert resolves_inside(root, root)
    assert resolves_inside(root / "legacy" / "not-there-yet.dump", root)
    assert resolves_inside(root / "legacy" / "in" / "x.dump", root)
    assert not resolves_inside(root / "legacy" / "out" / "x.dump", root)
    assert not resolves_inside(root / ".." / "elsewhere", root)
    assert not resolves_inside(tmp_path / "Secrets2", root)  # shares the prefix, not the root
