"""``adaptlab init``: create a project folder, all at once or not at all."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import yaml

from adaptlab.config import CONFIG_FILE, load_config
from adaptlab.data import check_examples, load_examples
from adaptlab.errors import AdaptlabError

EXAMPLES = {"support-tickets": "support_tickets"}


def _example_root(name: str) -> Path:
    if name not in EXAMPLES:
        raise AdaptlabError(
            f"unknown example '{name}'",
            fix="choose one of: " + ", ".join(EXAMPLES),
            code="unknown-example",
        )
    return Path(str(resources.files("adaptlab") / "examples" / EXAMPLES[name]))


def _write_example(target: Path, name: str) -> None:
    src = _example_root(name)
    (target / "data").mkdir()
    shutil.copy(src / "adaptlab.yaml", target / CONFIG_FILE)
    for data_file in src.glob("*.jsonl"):
        shutil.copy(data_file, target / "data" / data_file.name)
    if (src / "docs").is_dir():
        shutil.copytree(src / "docs", target / "docs")


def _write_from_data(target: Path, data: Path, input_field: str, label_field: str) -> None:
    examples = load_examples(data, input_field=input_field, label_field=label_field)
    labels = sorted({ex.label for ex in examples})
    check_examples(examples, labels).raise_on_errors()
    (target / "data").mkdir()
    shutil.copy(data, target / "data" / data.name)
    config = {
        "name": target.name,
        "task": "classification",
        "seed": 42,
        "data": {
            "path": f"data/{data.name}",
            "input_field": input_field,
            "label_field": label_field,
        },
        # A description per label is what zero-shot compares against; the label
        # name alone is a weak start the user is expected to improve.
        "labels": {label: label.replace("_", " ") for label in labels},
        "candidates": [
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot-8", "strategy": "few-shot", "params": {"k": 8}},
            {"name": "rag-knn", "strategy": "rag", "params": {"top_k": 10}},
            {"name": "finetune", "strategy": "finetune"},
        ],
    }
    (target / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def init_project(
    directory: str | Path,
    *,
    example: str | None = None,
    data: str | Path | None = None,
    input_field: str = "text",
    label_field: str = "label",
) -> Path:
    """Create ``directory`` with ``adaptlab.yaml`` and data; validate before it appears.

    Everything is written into a temporary sibling folder, checked, and only then
    renamed into place, so a failure leaves no half-written project behind.
    """
    target = Path(directory).resolve()
    if target.exists() and any(target.iterdir()):
        raise AdaptlabError(
            "folder exists and is not empty",
            file=target,
            fix="choose a new folder name, or empty this one",
            code="exists",
        )
    if (example is None) == (data is None):
        raise AdaptlabError(
            "say where the project's data comes from",
            fix="pass --example support-tickets, or --data FILE.jsonl with your examples",
            code="usage",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if example is not None:
            _write_example(tmp, example)
        else:
            assert data is not None
            _write_from_data(tmp, Path(data), input_field, label_field)
        load_config(tmp)  # the project must load before it is handed over
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
