"""Exported model folders are data: a tampered, hostile or broken folder is refused
with the file and the fix, never loaded; exports never overwrite and never go stale."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from adaptlab.core.errors import AdaptlabError
from adaptlab.engine.artifact import _hashes, load_model
from adaptlab.engine.manifest import MANIFEST
from tests.conftest import small_project


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> dict[str, Path]:
    from adaptlab import Project, run_project
    from adaptlab.engine.artifact import export_candidate

    base = tmp_path_factory.mktemp("artifact")
    root = small_project(
        base / "p",
        example_project,
        5,
        [
            {"name": "few-shot", "strategy": "few-shot", "params": {"k": 3}},
            {"name": "knn", "strategy": "rag", "params": {"top_k": 3}},
            {"name": "tfidf", "strategy": "tfidf-lr"},
        ],
    )
    project = Project.load(root)
    run_project(project)
    out = {"project": root}
    for name in ("few-shot", "knn", "tfidf"):
        outcome = export_candidate(project, name, base / name)
        assert outcome.reproduced is not None and outcome.reproduced[0] == outcome.reproduced[1]
        out[name] = base / name
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _rehash(folder: Path) -> None:
    """What an attacker who edits files would also do: fix the manifest's hashes."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = _hashes(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _refused(folder: Path, *needles: str) -> AdaptlabError:
    with pytest.raises(AdaptlabError) as exc:
        load_model(folder)
    text = str(exc.value)
    for needle in needles:
        assert needle in text, text
    assert exc.value.fix
    return exc.value


def test_a_loaded_export_answers_like_the_project(exports: dict[str, Path]) -> None:
    for name in ("few-shot", "knn", "tfidf"):
        model = load_model(exports[name])
        preds = model.predict(["my parcel never arrived", "I was charged twice"])
        assert len(preds) == 2 and all(p.label in model.manifest.labels for p in preds)
    knn = json.loads((exports["knn"] / MANIFEST).read_text())
    assert knn["state"]["n_train"] > 0 and knn["source"]["result_key"]
    shots = json.loads((exports["few-shot"] / MANIFEST).read_text())["state"]["shots"]
    assert len(shots) == 3 * 6 and {"id", "text", "label"} <= set(shots[0])


def test_a_changed_file_is_refused_by_its_hash(exports: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(exports["knn"], tmp_path)
    data = (folder / "knn_index.npz").read_bytes()
    (folder / "knn_index.npz").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    _refused(folder, "knn_index.npz", "changed after export")


def test_object_arrays_and_foreign_skops_types_are_never_unpickled(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    import skops.io as sio

    folder = _copy(exports["knn"], tmp_path / "a")
    np.savez(folder / "knn_index.npz", vectors=np.array([{"x": 1}], dtype=object), labels=[0])
    _rehash(folder)
    _refused(folder, "knn_index.npz", "not a readable array file")

    folder = _copy(exports["tfidf"], tmp_path / "b")
    sio.dump({"vectorizer": Hostile(), "model": Hostile()}, folder / "tfidf_lr.skops")
    _rehash(folder)
    _refused(folder, "tfidf_lr.skops", "could run code", "Hostile")
    assert not Hostile.built


class Hostile:
    built = False

    def __setstate__(self, state: Any) -> None:
        Hostile.built = True


def test_links_paths_outside_and_broken_manifests_are_refused(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    folder = _copy(exports["few-shot"], tmp_path / "link")
    (folder / "classifier.skops").unlink()
    os.symlink(exports["few-shot"] / "classifier.skops", folder / "classifier.skops")
    _refused(folder, "classifier.skops", "a link")

    folder = _copy(exports["few-shot"], tmp_path / "outside")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder, "outside the model folder")

    folder = _copy(exports["few-shot"], tmp_path / "field")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["labels"] = "billing"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder, MANIFEST, "field labels")

    (folder / MANIFEST).write_text("{not json")
    _refused(folder, "not a valid manifest")

    manifest["labels"] = {"a": ""}
    manifest["format_version"] = 99
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder, "version 99", "upgrade")

    (folder / MANIFEST).unlink()
    _refused(folder, "not an exported adaptlab model")
    _refused(tmp_path / "nowhere", "not a folder")


def test_export_never_overwrites_names_candidates_and_refuses_a_stale_result(
    exports: dict[str, Path], cli: Any, tmp_path: Path
) -> None:
    root = exports["project"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    cli("export", "-p", root, "--candidate", "knn", full).error("not empty")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    cli("export", "-p", root, "--candidate", "nope", tmp_path / "x").error("nope", "few-shot, knn")
    assert not (tmp_path / "x").exists()
    best = cli("export", "-p", root, "--candidate", "best", tmp_path / "best").ok()
    assert "exported" in best and "test inputs" in best

    changed = tmp_path / "changed"
    shutil.copytree(root, changed)
    cfg = yaml.safe_load((changed / "adaptlab.yaml").read_text())
    cfg["candidates"][0]["params"]["k"] = 4
    (changed / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli("export", "-p", changed, "--candidate", "few-shot", tmp_path / "y").error(
        "changed since run", "adaptlab run"
    )
    assert not (tmp_path / "y").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".y.")]  # no leftovers


def test_predict_reads_text_or_jsonl_and_names_the_bad_line(
    exports: dict[str, Path], cli: Any, tmp_path: Path
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("my parcel never arrived\n\nI was charged twice\n")
    out = tmp_path / "out.jsonl"
    cli("predict", "--model", exports["few-shot"], src, "-o", out).ok()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "3"] and all(r["candidate"] == "few-shot" for r in rows)
    by_project = tmp_path / "p.jsonl"
    cli("predict", "-p", exports["project"], "-c", "few-shot", src, "-o", by_project).ok()
    again = [json.loads(line) for line in by_project.read_text().splitlines()]
    assert [(r["label"], r["score"]) for r in again] == [(r["label"], r["score"]) for r in rows]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    cli("predict", "--model", exports["few-shot"], bad).error("bad.jsonl:2", "not text")
    bad.write_text('{"text": "fine"}\n{"body": "x"}\n')
    cli("predict", "--model", exports["few-shot"], bad).error("bad.jsonl:2", "no 'text' field")
    bad.write_text('{"text": "fine"}\n{oops\n')
    cli("predict", "--model", exports["few-shot"], bad).error("bad.jsonl:2", "not valid JSON")
    cli("predict", "--model", tmp_path, src).error("not an exported adaptlab model")


@pytest.mark.slow
def test_a_rag_candidate_is_served_with_its_retrieval_and_template(tmp_path: Path) -> None:
    """A generative candidate with context_k: the export names the project whose index
    serves it; the loaded model retrieves, renders the template and parses as the run."""
    from adaptlab import Project, run_project
    from adaptlab.engine.artifact import export_candidate
    from adaptlab.engine.scaffold import init_project
    from adaptlab.store import RunStore
    from tests.fakes.fake_llm import ChatCall, FakeLLMServer

    def answer(call: ChatCall) -> str:  # quotes the first passage it was given
        first = call.user_text.split("[1] ", 1)
        return first[1].splitlines()[0][:80] if len(first) == 2 else "no passages"

    root = init_project(tmp_path / "qa", example="support-qa")
    with FakeLLMServer(answer) as server:
        cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
        cfg["llms"] = {
            "chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": server.base_url}
        }
        cfg["rag"]["mode"] = "bm25"
        cfg["candidates"] = [
            {
                "name": "rag",
                "strategy": "llm-zero-shot",
                "llm": "chat",
                "params": {"max_tokens": 64, "context_k": 3},
            }
        ]
        (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        project = Project.load(root)
        run_project(project)
        export_candidate(project, "rag", tmp_path / "rag")
        manifest = json.loads((tmp_path / "rag" / MANIFEST).read_text())
        assert manifest["rag_project"] == str(root.resolve())
        model = load_model(tmp_path / "rag")
        with RunStore(project.store_path) as store:
            rows = store.predictions(manifest["source"]["result_key"])[:5]
        preds = model.predict([r.input for r in rows])
    assert [p.label for p in preds] == [r.predicted for r in rows]
    assert all(p.context for p in preds)  # the passages it was given travel with the answer


def test_a_provider_fine_tune_is_exported_as_its_model_id_and_starts_no_job(
    tmp_path: Path, example_project: Path
) -> None:
    from adaptlab import Project, run_project
    from adaptlab.engine.artifact import export_candidate
    from tests.fakes.fake_finetune import FakeFinetuneServer
    from tests.test_provider_finetune import ft_project

    with FakeFinetuneServer() as server:
        project = Project.load(ft_project(tmp_path, example_project, server))
        run_project(project)
        tuned = server.job().fine_tuned_model
        export_candidate(project, "ft", tmp_path / "ft")
        manifest = json.loads((tmp_path / "ft" / MANIFEST).read_text())
        assert manifest["llm"]["name"] == tuned and manifest["llm"]["base_url"] == server.base_url
        assert "api_key" not in manifest["llm"] and manifest["llm"].get("api_key_env") is None
        before = len(server.calls)
        preds = load_model(tmp_path / "ft").predict(["my parcel never arrived"])
        assert preds[0].label in project.config.labels
        assert [c.model for c in server.calls[before:]] == [tuned]
        assert server.jobs_created == 1


def test_state_that_names_files_outside_or_does_not_fit_is_refused(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    """Found by a new user: a manifest whose state named /tmp/x.npz was loaded."""
    outside = tmp_path / "outside.npz"
    np.savez(outside, vectors=np.zeros((2, 3)), labels=np.array([0, 1]))
    for i, name in enumerate((str(outside), "../outside.npz", "sub/knn_index.npz", "", 7)):
        folder = _copy(exports["knn"], tmp_path / f"o{i}")
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["state"]["arrays"] = name
        (folder / MANIFEST).write_text(json.dumps(manifest))
        _refused(folder, "not a file of the model folder")
    # Files that load but do not fit the model fail at load, not at the first request.
    n_labels = len(json.loads((exports["knn"] / MANIFEST).read_text())["labels"])
    for i, (labels, what) in enumerate(
        ((np.array([0, n_labels]), "labels"), (np.array([0.5, 1]), "labels"))
    ):
        folder = _copy(exports["knn"], tmp_path / f"f{i}")
        np.savez(folder / "knn_index.npz", vectors=np.ones((2, 4)), labels=labels)
        _rehash(folder)
        _refused(folder, "does not fit this model", what)
    folder = _copy(exports["knn"], tmp_path / "missing-key")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["state"]["n_train"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder, "malformed 'state'", "n_train")
    folder = _copy(exports["knn"], tmp_path / "strategy")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["strategy"] = "nosuch"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(folder, "strategy 'nosuch', which this adaptlab does not have", "few-shot")


def test_predict_names_the_encoding_and_refuses_empty_inputs(
    exports: dict[str, Path], cli: Any, tmp_path: Path
) -> None:
    """Found by a new user: a Latin-1 file ended in 'internal error'."""
    latin = tmp_path / "latin.txt"
    latin.write_bytes("first ticket\ncaf\xe9 bill\n".encode("latin-1"))
    cli("predict", "--model", exports["few-shot"], latin).error(
        "latin.txt:2", "utf-8", "--encoding"
    )
    out = tmp_path / "out.jsonl"
    cli("predict", "--model", exports["few-shot"], latin, "--encoding", "latin-1", "-o", out).ok()
    assert json.loads(out.read_text().splitlines()[1])["input"] == "café bill"
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("my parcel is late\n", encoding="utf-16")
    cli("predict", "--model", exports["few-shot"], utf16).error("utf16.txt:1", "--encoding")
    cli("predict", "--model", exports["few-shot"], utf16, "--encoding", "utf-16", "-o", out).ok()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"text": "my parcel is late"}\n')
    cli("predict", "--model", exports["few-shot"], bom, "-o", out).ok()
    bad = cli("predict", "--model", exports["few-shot"], bom, "--encoding", "nope")
    assert bad.code == 2 and "unknown encoding 'nope'" in bad.text
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "fine"}\n{"text": "  "}\n')
    cli("predict", "--model", exports["few-shot"], empty).error("empty.jsonl:2", "empty")


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("backend", "needles"),
    [
        ("openai", ("'openai' (a generative model) as its encoder",)),
        ("anthropic", ("'anthropic' (a generative model)",)),
        ("hf", ("'hf' (a generative model)",)),
        ("no-such-backend", ("unknown backend 'no-such-backend'",)),
    ],
)
def test_an_encoder_entry_naming_no_encoder_is_refused(
    exports: dict[str, Path], tmp_path: Path, backend: str, needles: tuple[str, ...]
) -> None:
    """Issue 23, kind 8: a folder's encoder that is a generative backend, or none at all."""
    folder = _copy(exports["few-shot"], tmp_path / backend)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert isinstance(manifest["encoder"], dict)
    manifest["encoder"]["backend"] = backend
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _rehash(folder)
    _refused(folder, *needles)
