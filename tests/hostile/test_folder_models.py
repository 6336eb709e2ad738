"""Models and checkpoints inside a project folder that adaptlab must not trust."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import base_config, write_project


@pytest.mark.parametrize(
    "modules",
    [
        [{"idx": 0, "name": "0", "path": "", "type": "os.system"}],
        [{"idx": 0, "name": "0", "path": "", "type": "evil_module.Backdoor"}],
    ],
    ids=["stdlib-callable", "unknown-module"],
)
def test_encoder_folder_naming_a_foreign_class(cli: Any, tmp_path: Path, modules: Any) -> None:
    model = tmp_path / "p" / "models" / "enc"
    model.mkdir(parents=True)
    (model / "modules.json").write_text(json.dumps(modules))
    cfg = base_config(model={"name": "models/enc"})
    root = write_project(tmp_path / "p", config=cfg)
    cli("run", "-p", root).error("cannot load model", "fix:")


def test_checkpoint_write_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch reports a failed write as RuntimeError; the user gets the file and the fix."""
    import torch

    from adaptlab.core.errors import AdaptlabError
    from adaptlab.train import checkpoint

    def full(obj: object, f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 0 vs 64")

    monkeypatch.setattr(torch, "save", full)
    (tmp_path / "last.pt").write_bytes(b"previous")
    with pytest.raises(AdaptlabError) as exc:
        checkpoint.save({"x": torch.zeros(1)}, tmp_path / "last.pt")
    assert "last.tmp" in str(exc.value) and "free disk space" in str(exc.value)
    assert (tmp_path / "last.pt").read_bytes() == b"previous"
    assert not (tmp_path / "last.tmp").exists()


def test_linked_checkpoint_folder_is_not_followed_by_force(cli: Any, tmp_path: Path) -> None:
    """--force clears a candidate's checkpoint folder; a link there must not lead out."""
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    root = write_project(tmp_path / "p")
    cli("run", "-p", root).ok()
    ckpts = root / ".adaptlab" / "checkpoints"
    (key,) = [p.name for p in ckpts.iterdir()]
    import shutil

    shutil.rmtree(ckpts / key)
    (ckpts / key).symlink_to(outside)
    cli("run", "-p", root, "--force").error("is a link", f"rm {ckpts / key}")
    assert (outside / "keep.txt").read_text() == "keep me"
