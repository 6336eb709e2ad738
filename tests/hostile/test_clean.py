"""``adaptlab clean``: frees old checkpoints, never anything outside .adaptlab/checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import base_config, write_project


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after one finished run (zero-shot: fast, leaves its key folder)."""
    import sys

    from adaptlab.cli import main

    root = write_project(tmp_path_factory.mktemp("clean") / "p", config=base_config())
    argv = sys.argv
    sys.argv = ["adaptlab", "run", "-p", str(root)]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    assert exc.value.code == 0
    return root


@pytest.fixture
def project(ran: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "p"
    shutil.copytree(ran, root, symlinks=True)
    return root


def _ckpts(root: Path) -> Path:
    return root / ".adaptlab" / "checkpoints"


def _old(root: Path, name: str = "0ld0ld0ld0ld0ld0", size: int = 2_000_000) -> Path:
    folder = _ckpts(root) / name / "model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * size)
    return folder.parent


def _kept(root: Path) -> Path:
    (current,) = [p for p in _ckpts(root).iterdir() if not p.name.startswith("0ld")]
    return current


def test_removes_unreferenced_checkpoints_and_says_how_much(cli: Any, project: Path) -> None:
    old = _old(project)
    current = _kept(project)
    text = cli("clean", "-p", project).ok()
    assert not old.exists() and current.exists()
    assert "removed .adaptlab/checkpoints/0ld0ld0ld0ld0ld0" in text
    assert "freed 2.0 MB in 1 entry" in text
    assert "nothing to remove" in cli("clean", "-p", project).ok()


def test_dry_run_removes_nothing(cli: Any, project: Path) -> None:
    old = _old(project)
    text = cli("clean", "-p", project, "--dry-run").ok()
    assert "would remove .adaptlab/checkpoints/0ld0ld0ld0ld0ld0" in text
    assert "would free 2.0 MB" in text
    assert (old / "model" / "model.safetensors").exists()


def test_all_removes_even_the_latest_runs(cli: Any, project: Path) -> None:
    current = _kept(project)
    cli("clean", "-p", project, "--all").ok()
    assert not current.exists()
    assert _ckpts(project).is_dir()  # the folder itself stays


def test_an_unfinished_fine_tune_is_kept_unless_all(cli: Any, project: Path) -> None:
    unfinished = _old(project, "0ldunfinished000")
    (unfinished / "last.pt").write_bytes(b"resume me")
    text = cli("clean", "-p", project).ok()
    assert unfinished.exists() and "kept 1 unfinished fine-tune" in text
    cli("clean", "-p", project, "--all").ok()
    assert not unfinished.exists()


def test_keep_all_runs_keeps_older_runs_results(cli: Any, project: Path) -> None:
    import sqlite3

    old = _old(project)
    # An older run that used this checkpoint (foreign keys are off in a plain connection).
    with sqlite3.connect(project / ".adaptlab" / "runs.db") as conn:
        conn.execute(
            "INSERT INTO run_candidates (run_id, position, name, result_key, reused) "
            "VALUES ('older', 0, 'zs', ?, 0)",
            (old.name,),
        )
    cli("clean", "-p", project, "--keep-all-runs").ok()
    assert old.exists()
    cli("clean", "-p", project).ok()
    assert not old.exists()


def test_all_and_keep_all_runs_conflict(cli: Any, project: Path) -> None:
    result = cli("clean", "-p", project, "--all", "--keep-all-runs")
    assert result.code == 2 and "--keep-all-runs" in result.text


def test_a_link_under_checkpoints_is_removed_as_a_link(
    cli: Any, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (_ckpts(project) / "0ldlink").symlink_to(outside)
    (_ckpts(project) / "0ldfilelink").symlink_to(outside / "precious.txt")
    text = cli("clean", "-p", project).ok()
    assert "a link; what it points to is left alone" in text
    assert not os.path.lexists(_ckpts(project) / "0ldlink")
    assert (outside / "precious.txt").read_text() == "keep me"


def test_links_inside_a_removed_folder_are_not_followed(
    cli: Any, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    old = _old(project)
    (old / "model" / "escape").symlink_to(outside)
    (old / "weights.bin").symlink_to(outside / "precious.txt")
    text = cli("clean", "-p", project).ok()
    assert not old.exists()
    assert (outside / "precious.txt").read_text() == "keep me"
    assert "freed 2.0 MB" in text  # the link's target is not counted either


def test_a_link_named_like_a_kept_result_is_not_followed(
    cli: Any, project: Path, tmp_path: Path
) -> None:
    current = _kept(project)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    os.rmdir(current)
    current.symlink_to(outside)
    cli("clean", "-p", project).ok()
    assert (outside / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("which", ["checkpoints", "state"])
def test_checkpoints_folder_that_is_a_link_is_refused(
    cli: Any, project: Path, tmp_path: Path, which: str
) -> None:
    outside = tmp_path / "home"
    (outside / "checkpoints" / "dear").mkdir(parents=True)
    (outside / "checkpoints" / "dear" / "thesis.tex").write_text("keep me")
    if which == "checkpoints":
        import shutil

        shutil.rmtree(_ckpts(project))
        _ckpts(project).symlink_to(outside / "checkpoints")
    else:
        import shutil

        shutil.rmtree(project / ".adaptlab")
        (project / ".adaptlab").symlink_to(outside)
    cli("clean", "-p", project).error("a link to", "rm ")
    assert (outside / "checkpoints" / "dear" / "thesis.tex").read_text() == "keep me"


def test_checkpoints_that_is_a_file(cli: Any, project: Path) -> None:
    import shutil

    shutil.rmtree(_ckpts(project))
    _ckpts(project).write_text("not a folder")
    cli("clean", "-p", project).error("not a folder")
    assert _ckpts(project).is_file()


def test_a_project_that_never_ran(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "fresh")
    assert "nothing to remove" in cli("clean", "-p", root).ok()
    assert not (root / ".adaptlab").exists()


def test_damaged_store_is_an_error_not_a_wipe(cli: Any, project: Path) -> None:
    (project / ".adaptlab" / "runs.db").write_bytes(os.urandom(4096))
    for name in ("runs.db-wal", "runs.db-shm"):
        (project / ".adaptlab" / name).unlink(missing_ok=True)
    current = _kept(project)
    cli("clean", "-p", project).error("runs.db")
    assert current.exists()


def test_clean_refuses_while_a_run_holds_the_project(cli: Any, project: Path) -> None:
    import fcntl

    old = _old(project)
    with open(project / ".adaptlab" / "run.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write("pid 4242 on elsewhere\n")
        fh.flush()
        cli("clean", "-p", project).error("a run is in progress", "pid 4242")
        assert old.exists()
        assert "would remove" in cli("clean", "-p", project, "--dry-run").ok()


def test_checkpoints_of_the_current_candidates_are_kept(cli: Any, project: Path) -> None:
    """After ``run -c zero-shot`` the latest run lacks the fine-tune; its model stays."""
    import yaml

    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import result_key

    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["candidates"].append({"name": "ft", "strategy": "finetune"})
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    loaded = Project.load(project)
    key = result_key(loaded, loaded.config.candidates[-1], loaded.split())
    model = _old(project, key)
    old = _old(project)
    text = cli("clean", "-p", project).ok()
    assert model.exists() and not old.exists()
    assert "candidates in adaptlab.yaml" in text


def test_exports_of_results_no_longer_used_are_removed_and_links_are_not_followed(
    cli: Any, project: Path, tmp_path: Path
) -> None:
    """``predict -c`` / ``serve -c`` export into .adaptlab/exports/<key>: the same rule."""
    cli("predict", "-p", project, "-c", "best", "-o", tmp_path / "a.jsonl", os.devnull).ok()
    exports = project / ".adaptlab" / "exports"
    (current,) = list(exports.iterdir())
    stale = exports / "0ld0ld0ld0ld0ld0"
    stale.mkdir()
    (stale / "adaptlab-model.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(outside, exports / "1ink1ink1ink1ink")
    text = cli("clean", "-p", project).ok()
    assert current.exists() and not stale.exists() and not (exports / "1ink1ink1ink1ink").exists()
    assert (outside / "keep.txt").read_text() == "mine"
    assert "removed .adaptlab/exports/0ld0ld0ld0ld0ld0" in text
    (project / ".adaptlab" / "exports").rename(tmp_path / "moved")
    os.symlink(outside, project / ".adaptlab" / "exports")
    cli("clean", "-p", project).error("exports", "a link")
    assert (outside / "keep.txt").exists()
