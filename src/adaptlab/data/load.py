"""Read labelled examples from JSONL or CSV, naming file and line for every problem.

What a record's label field holds depends on the task:

* classification: a label (a string);
* extraction: the target JSON object (in JSONL an object, in CSV a cell holding one),
  checked against the project's schema and kept as canonical JSON text (sorted keys,
  non-ASCII kept), so equal objects are equal strings;
* generation: the reference answer (a non-empty string).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adaptlab.errors import DataError, Issue

Task = Literal["classification", "extraction", "generation"]


@dataclass(frozen=True)
class Example:
    """One labelled input; ``file`` and ``line`` point back to where it came from.

    ``label`` is the target as text: a label, the canonical JSON of an extraction
    target (see :func:`canonical_json`) or a reference answer.
    """

    text: str
    label: str
    file: str
    line: int

    @property
    def id(self) -> str:
        return f"{Path(self.file).name}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "file": self.file, "line": self.line}


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"byte 0x{raw[exc.start]:02x} is not valid {encoding}",
            file=path,
            line=line,
            fix=(
                f"re-save the file as {encoding} (e.g. iconv -f latin1 -t utf-8), "
                "or set data.encoding in adaptlab.yaml"
            ),
            code="encoding",
        ) from None
    return text.removeprefix("\ufeff")


def _field(
    record: dict[str, Any],
    name: str,
    path: Path,
    line: int,
    role: str,
    issues: list[Issue],
    what: str = "",
) -> str | None:
    """The stripped text of a field; ``what`` names its meaning in the empty-field issue."""
    if name not in record:
        close = ", ".join(sorted(record)) or "none"
        issues.append(
            Issue(
                f"missing {role} field '{name}' (fields present: {close})",
                file=str(path),
                line=line,
                fix=f"add '{name}' to this record, or set data.{role}_field in adaptlab.yaml",
                code="missing-field",
            )
        )
        return None
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        issues.append(
            Issue(
                f"{role} field '{name}' must be a string, got {type(value).__name__}",
                file=str(path),
                line=line,
                fix="write it as a JSON string",
                code="wrong-type",
            )
        )
        return None
    text = str(value).strip()
    if not text:
        issues.append(
            Issue(
                f"{role} field '{name}' is empty" + (f" ({what})" if what else ""),
                file=str(path),
                line=line,
                fix=f"write {what} or delete the record"
                if what
                else "fill it in or delete the record",
                code="empty-text",
            )
        )
        return None
    return text


def canonical_json(obj: Any) -> str:
    """The one text form of a JSON value: sorted keys, non-ASCII kept, default separators.

    The runner stores a parsed extraction answer in the same form, so a prediction and
    its target compare as strings.
    """
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _extraction_target(
    record: dict[str, Any],
    name: str,
    path: Path,
    line: int,
    schema: dict[str, Any] | None,
    issues: list[Issue],
) -> str | None:
    """The target object of an extraction record as canonical JSON, or None with an issue."""
    if name not in record:
        return _field(record, name, path, line, "label", issues)  # the missing-field issue
    value = record[name]
    example = 'write the target as a JSON object, e.g. {"field": "value"}'
    if isinstance(value, str):
        # CSV has no objects: the cell holds the object's JSON (JSONL may do the same).
        if not value.strip():
            issues.append(
                Issue(
                    f"label field '{name}' is empty",
                    file=str(path),
                    line=line,
                    fix=f"{example}, or delete the record",
                    code="empty-text",
                )
            )
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            issues.append(
                Issue(
                    f"label field '{name}' is not valid JSON (column {exc.colno}: {exc.msg})",
                    file=str(path),
                    line=line,
                    fix=example + " (in CSV, quote the cell and double its quotes: "
                    '"{""field"": ""value""}")',
                    code="bad-target",
                )
            )
            return None
    if not isinstance(value, dict):
        issues.append(
            Issue(
                f"label field '{name}' must be a JSON object for an extraction task, "
                f"got {_json_type(value)}",
                file=str(path),
                line=line,
                fix=example,
                code="not-object-target",
            )
        )
        return None
    if schema is not None:
        from adaptlab.evaluation.text_metrics import validate_json

        _, errors = validate_json(value, schema)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            issues.append(
                Issue(
                    f"the target does not follow the schema: {errors[0]}{more}",
                    file=str(path),
                    line=line,
                    fix="correct the target, or change 'schema:' in adaptlab.yaml if the "
                    "schema is what is wrong",
                    code="schema-violation",
                )
            )
            return None
    return canonical_json(value)


def _json_type(value: Any) -> str:
    names = {list: "an array", bool: "a boolean", int: "a number", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return names.get(type(value), type(value).__name__)


def _records_jsonl(text: str, path: Path) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((lineno, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON at column {exc.colno}: {exc.msg}",
                file=path,
                line=lineno,
                fix='each line must be one complete JSON object, e.g. {"text": "…", "label": "…"}',
                code="bad-json",
            ) from None
    return records


def _records_csv(text: str, path: Path) -> list[tuple[int, Any]]:
    # strict: an unclosed quote is an error instead of silently eating the file
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise DataError(f"unreadable CSV header: {exc}", file=path, line=1) from None
    header = [h.strip() for h in header]
    records: list[tuple[int, Any]] = []
    start = reader.line_num + 1  # a quoted field may span lines; errors name the row's first
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                if len(row) != len(header):
                    raise DataError(
                        f"row has {len(row)} columns, the header has {len(header)}",
                        file=path,
                        line=start,
                        fix="quote fields that contain commas with double quotes",
                        code="bad-csv",
                    )
                records.append((start, dict(zip(header, row, strict=True))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(
            f"malformed CSV ({exc}): a double quote opened here is never closed",
            file=path,
            line=start,
            fix='close the quote, or double it ("") inside a quoted field',
            code="bad-csv",
        ) from None
    return records


def load_examples(
    path: str | Path,
    *,
    input_field: str = "text",
    label_field: str = "label",
    fmt: str = "auto",
    encoding: str = "utf-8",
    task: Task = "classification",
    schema: dict[str, Any] | None = None,
) -> list[Example]:
    """Load every record; raise :class:`DataError` listing each record that is unusable.

    Nothing is dropped silently: a record with a missing or empty field stops the
    load with its line number, so the user fixes or deletes it on purpose. For an
    extraction ``task`` the target must be a JSON object that follows ``schema``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            "data file not found",
            file=path,
            fix="check data.path in adaptlab.yaml (relative to the project folder)",
            code="not-found",
        )
    if fmt == "auto":
        suffix = path.suffix.lower()
        if suffix not in {".jsonl", ".csv", ".ndjson"}:
            raise DataError(
                f"cannot tell the format of a '{suffix or 'no extension'}' file",
                file=path,
                fix="use .jsonl or .csv, or set data.format in adaptlab.yaml",
                code="format",
            )
        fmt = "csv" if suffix == ".csv" else "jsonl"
    text = _decode(path, encoding)
    records = _records_csv(text, path) if fmt == "csv" else _records_jsonl(text, path)
    if not records:
        raise DataError(
            "the file holds no records",
            file=path,
            line=1,
            fix="add labelled examples, one per line",
            code="empty-file",
        )
    issues: list[Issue] = []
    examples: list[Example] = []
    for lineno, record in records:
        if not isinstance(record, dict):
            issues.append(
                Issue(
                    f"expected a JSON object, got {type(record).__name__}",
                    file=str(path),
                    line=lineno,
                    fix='write {"' + input_field + '": "…", "' + label_field + '": "…"}',
                    code="not-object",
                )
            )
            continue
        text_value = _field(record, input_field, path, lineno, "input", issues)
        if task == "extraction":
            label_value = _extraction_target(record, label_field, path, lineno, schema, issues)
        else:
            what = "the reference answer" if task == "generation" else ""
            label_value = _field(record, label_field, path, lineno, "label", issues, what)
        if text_value is not None and label_value is not None:
            examples.append(Example(text_value, label_value, str(path), lineno))
    if issues:
        raise DataError(f"{len(issues)} unusable record(s) in {path}", issues=issues)
    return examples
