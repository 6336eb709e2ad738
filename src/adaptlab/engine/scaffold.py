"""``adaptlab init``: create a project folder, all at once or not at all."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from adaptlab.config import CONFIG_FILE, DataConfig
from adaptlab.core.errors import AdaptlabError
from adaptlab.data import check_examples, load_examples
from adaptlab.engine.validate import load_config

EXAMPLES = {"support-tickets": "support_tickets", "support-qa": "support_qa"}
# Examples that read another example's documents (one copy of the Northwind articles).
_DOCS_FROM = {"support-qa": "support-tickets"}


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
    docs = _example_root(_DOCS_FROM[name]) / "docs" if name in _DOCS_FROM else src / "docs"
    if docs.is_dir():
        shutil.copytree(docs, target / "docs")


# Written above `labels:` in a generated adaptlab.yaml: the label names are only a start.
LABELS_COMMENT = """\
# Each label's description is the prompt that zero-shot classifies against (and what an
# LLM is told the label means). They start as the bare label names: replace each with a
# line saying what the label covers, e.g. "billing: invoices, charges, refunds of fees".
"""


@dataclass(frozen=True)
class DataOptions:
    """How ``init --data`` reads the file; the same keys as ``data:`` in adaptlab.yaml."""

    input_field: str = "text"
    label_field: str = "label"
    fmt: str = "auto"
    encoding: str = "utf-8"
    delimiter: str = "auto"

    def config(self, path: str) -> dict[str, str]:
        """The ``data:`` section: the path, the fields, and every option not at its default."""
        out = {"path": path, "input_field": self.input_field, "label_field": self.label_field}
        for key, value, default in (
            ("format", self.fmt, "auto"),
            ("encoding", self.encoding, "utf-8"),
            ("delimiter", self.delimiter, "auto"),
        ):
            if value != default:
                out[key] = value
        return out


def _write_from_data(target: Path, name: str, data: Path, opts: DataOptions) -> None:
    examples = load_examples(
        data,
        input_field=opts.input_field,
        label_field=opts.label_field,
        fmt=opts.fmt,
        encoding=opts.encoding,
        delimiter=opts.delimiter,
    )
    labels = sorted({ex.label for ex in examples})
    check_examples(examples, labels).raise_on_errors()
    (target / "data").mkdir()
    shutil.copy(data, target / "data" / data.name)
    config = {
        "name": name,
        "task": "classification",
        "seed": 42,
        "data": opts.config(f"data/{data.name}"),
        "labels": {label: label.replace("_", " ") for label in labels},
        "candidates": [
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot-8", "strategy": "few-shot", "params": {"k": 8}},
            {"name": "rag-knn", "strategy": "rag", "params": {"top_k": 10}},
            {"name": "finetune", "strategy": "finetune"},
        ],
    }
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    text = text.replace("\nlabels:\n", "\n" + LABELS_COMMENT + "labels:\n", 1)
    (target / CONFIG_FILE).write_text(text, encoding="utf-8")


def _data_options(
    input_field: str, label_field: str, fmt: str, encoding: str, delimiter: str
) -> DataOptions:
    """The options checked exactly as adaptlab.yaml's ``data:`` checks them."""
    from pydantic import ValidationError

    values = {
        "input_field": input_field,
        "label_field": label_field,
        "format": fmt,
        "encoding": encoding,
        "delimiter": delimiter,
    }
    try:
        d = DataConfig.model_validate({"path": "-", **values})
    except ValidationError as exc:
        first = exc.errors()[0]
        option = str(first["loc"][0]).replace("_", "-")
        raise AdaptlabError(
            f"--{option}: {first['msg']}",
            fix=DataConfig.model_fields[str(first["loc"][0])].description,
            code="usage",
        ) from None
    return DataOptions(d.input_field, d.label_field, d.format, d.encoding, d.delimiter)


def init_project(
    directory: str | Path,
    *,
    example: str | None = None,
    data: str | Path | None = None,
    input_field: str = "text",
    label_field: str = "label",
    fmt: str = "auto",
    encoding: str = "utf-8",
    delimiter: str = "auto",
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
            # The project is named after the folder asked for, not the temporary one.
            opts = _data_options(input_field, label_field, fmt, encoding, delimiter)
            _write_from_data(tmp, target.name, Path(data), opts)
        load_config(tmp)  # the project must load before it is handed over
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
