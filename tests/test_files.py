"""Folders written beside their place and renamed into it (asr.files): the target is the old folder or the whole
new one, and nothing is left beside it."""

import os

from asr.files import replace_folder, staging_folder


def test_a_staged_folder_replaces_the_old_one_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = staging_folder(target)
    assert staging.parent == tmp_path and staging.name.startswith(".") and not staging.exists()
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_folder(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_first_folder_is_renamed_into_place_and_a_stale_staging_folder_is_cleared(tmp_path):
    target = tmp_path / "runs" / "model"  # its parent is made
    stale = target.parent / f".model.{os.getpid()}.tmp"
    stale.mkdir(parents=True)
    (stale / "half-written.h5").write_text("x")
    staging = staging_folder(target)
    assert staging == stale and not staging.exists()
    staging.mkdir()
    (staging / "bundle.json").write_text("{}")
    replace_folder(staging, target)
    assert (target / "bundle.json").read_text() == "{}" and not staging.exists()
