"""Read labelled examples from JSONL or CSV, naming file and line for every problem.

What a record's label field holds depends on the task:

* classification: a label (a string);
* extraction: the target JSON object (in JSONL an object, in CSV a cell holding one),
  checked against the project's schema and kept as canonical JSON text (sorted keys,
  non-ASCII kept), so equal objects are equal strings;
* generation: the reference answer (a non-empty string).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adaptlab.core.errors import DataError, Issue
from adaptlab.core.files import read_regular_file
from adaptlab.core.strict_json import NotJsonError, json_fix, parse_json
from adaptlab.data.json_fields import validate_json

Task = Literal["classification", "extraction", "generation"]


@dataclass(frozen=True)
class Example:
    """One labelled input; ``file`` and ``line`` point back to where it came from.

    ``label`` is the target as text: a label, the canonical JSON of an extraction
    target (see :func:`canonical_json`) or a reference answer. ``sources`` are the
    ids of the documents that support the reference (``data.sources_field``; empty
    when the answer is in no document), for retrieval recall.
    """

    text: str
    label: str
    file: str
    line: int
    sources: tuple[str, ...] | None = None

    @property
    def id(self) -> str:
        return f"{Path(self.file).name}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "label": self.label,
            "file": self.file,
            "line": self.line,
        }
        if self.sources is not None:  # only then: fingerprints of other data stay as they were
            out["sources"] = list(self.sources)
        return out


DEFAULT_MAX_FILE_MB = 1024
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv"}

# Longest BOM first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes 0x80-0x9f are C1 control characters in latin-1 but letters, quotes and "€"
# in cp1252 (Excel on Windows); these five are undefined in cp1252.
_C1 = frozenset(range(0x80, 0xA0))
_CP1252_UNDEFINED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})


def _setting(key: str, value: str) -> str:
    """How to set a data option, in adaptlab.yaml and in ``adaptlab init --data``."""
    return f"set data.{key}: {value} in adaptlab.yaml (adaptlab init --data: --{key} {value})"


def _utf16_without_bom(raw: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when every other byte is NUL, as in ASCII text in UTF-16."""
    sample = raw[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def _encoding_advice(raw: bytes, encoding: str) -> tuple[str, str]:
    """(what the bytes look like, the fix) for bytes that are not valid ``encoding``."""
    utf16 = _utf16_without_bom(raw)
    if utf16:
        return (
            f"the file looks like {utf16.upper()} without a byte-order mark",
            _setting("encoding", utf16),
        )
    if codecs.lookup(encoding).name != "utf-8":
        return (
            f"the file is not {encoding}",
            "find the file's encoding (file -i FILE) and set data.encoding to it",
        )
    high = _C1.intersection(raw)
    if high and not high & _CP1252_UNDEFINED:
        return (
            "the file looks like Windows-1252 (Excel on Windows: bytes such as 0x80 '€' "
            "and 0x93/0x94 quotes)",
            _setting("encoding", "cp1252") + ", or convert it: iconv -f cp1252 -t utf-8",
        )
    if not high:
        return (
            "the file looks like Latin-1 (ISO-8859-1)",
            _setting("encoding", "latin-1") + ", or convert it: iconv -f latin1 -t utf-8",
        )
    return (
        "its encoding is neither UTF-8 nor Windows-1252",
        "find the file's encoding (file -i FILE) and set data.encoding to it, or re-save "
        "the file as UTF-8",
    )


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    """Text of ``raw``: a byte-order mark decides the encoding, else ``encoding``.

    A UTF-16/32 mark is certain where ``encoding`` is a guess. A UTF-8 mark is
    dropped and the rest read as ``encoding``: Excel writes that mark in front of
    cp1252 text too, and re-reading such a file as UTF-8 would fail again.
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            raw = raw[len(bom) :]
            if codec != "utf-8" or codecs.lookup(encoding).name.startswith("utf"):
                encoding = codec
            break
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        looks, fix = _encoding_advice(raw, encoding)
        raise DataError(
            f"byte 0x{raw[exc.start]:02x} is not valid {encoding}: {looks}",
            file=path,
            line=line,
            fix=fix,
            code="encoding",
        ) from None
    text = text.removeprefix("\ufeff")
    nul = text.find("\x00")
    if nul >= 0:
        utf16 = _utf16_without_bom(raw)
        raise DataError(
            "the file holds a NUL byte"
            + (f": it looks like {utf16.upper()} without a byte-order mark" if utf16 else ""),
            file=path,
            line=text.count("\n", 0, nul) + 1,
            fix=_setting("encoding", utf16)
            if utf16
            else "remove the NUL bytes (tr -d '\\000' < FILE > NEW), or check that data.path "
            "names a text file",
            code="nul-byte",
        )
    return text


def _text_type(value: Any) -> str | None:
    """None when ``value`` can be a text field, else what it is (for the message)."""
    if isinstance(value, str):
        return None
    if isinstance(value, bool) or value is None:
        return _json_type(value)
    if isinstance(value, int | float):
        return None  # finite: the JSON parser refuses NaN and Infinity
    return _json_type(value)


def _sources(
    record: dict[str, Any], name: str, path: Path, line: int, issues: list[Issue]
) -> tuple[str, ...] | None:
    """The list of supporting document ids (``[]`` when no document answers)."""
    value = record.get(name)
    if (
        name not in record
        or not isinstance(value, list)
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        issues.append(
            Issue(
                f"sources field '{name}' must be a list of document ids, got "
                + ("nothing" if name not in record else type(value).__name__),
                file=str(path),
                line=line,
                fix=f'write e.g. "{name}": ["refund-timelines"] (the file name without its '
                "suffix, relative to rag.docs), or [] when no document answers",
                code="sources",
            )
        )
        return None
    return tuple(v.strip() for v in value)


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
    got = _text_type(value)
    if got is not None:
        shown = json.dumps(value) if isinstance(value, bool) or value is None else ""
        issues.append(
            Issue(
                f"{role} field '{name}' must be text (a string or a number), got {got}",
                file=str(path),
                line=line,
                fix=f'write it as a JSON string, e.g. "{shown}"'
                if shown
                else "write it as a JSON string, or delete the record",
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
            value = parse_json(value)
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
        except (ValueError, RecursionError) as exc:  # NaN, a duplicate key, deep nesting
            why = str(exc) if isinstance(exc, ValueError) else "it is nested too deeply"
            issues.append(
                Issue(
                    f"label field '{name}' is not usable JSON: {why}",
                    file=str(path),
                    line=line,
                    fix=getattr(exc, "fix", example),
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
    names = {
        list: "an array",
        dict: "an object",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return names.get(type(value), type(value).__name__)


def _first_line(text: str) -> tuple[int, str]:
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if raw.strip(" \t\r"):
            return lineno, raw.removesuffix("\r")
    return 0, ""


def _not_jsonl(text: str, path: Path) -> None:
    """Stop early, with the right fix, on a JSON array or CSV file named .jsonl."""
    lineno, first = _first_line(text)
    head = first.strip(" \t\r")
    if not head or head.startswith("{"):
        return
    try:
        value = parse_json(head)
    except (ValueError, RecursionError):
        value = None
        parsed = False
    else:
        parsed = True
    if head.startswith("[") and (
        not parsed or (isinstance(value, list) and value and isinstance(value[0], dict))
    ):
        raise DataError(
            "the file is one JSON array, not JSON Lines (one object per line)",
            file=path,
            line=lineno,
            fix="write one object per line, e.g. jq -c '.[]' FILE > FILE.jsonl",
            code="json-array",
        )
    if not parsed and any(d in head for d in DELIMITERS) and '"' not in head[:1]:
        raise DataError(
            f"this looks like CSV, not JSON Lines (first line: '{head[:60]}')",
            file=path,
            line=lineno,
            fix="rename the file to .csv, or set data.format: csv in adaptlab.yaml "
            "(adaptlab init --data: --format csv)",
            code="format",
        )


def _records_jsonl(text: str, path: Path) -> list[tuple[int, Any]]:
    """JSON Lines: records end at \\n (a \\r before it is dropped), as the format says.

    ``str.splitlines()`` would also split at U+2028, U+2029, U+0085, \\x0b, \\x0c and
    \\x1c-\\x1e, which JSON allows raw inside a string.
    """
    _not_jsonl(text, path)
    records: list[tuple[int, Any]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip(" \t\r"):
            continue
        try:
            records.append((lineno, parse_json(raw)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON at column {exc.colno}: {exc.msg}",
                file=path,
                line=lineno,
                fix=json_fix(raw, exc),
                code="bad-json",
            ) from None
        except NotJsonError as exc:
            raise DataError(
                str(exc), file=path, line=lineno, fix=exc.fix, code="bad-json"
            ) from None
        except RecursionError:
            raise DataError(
                "the JSON on this line is nested too deeply to read",
                file=path,
                line=lineno,
                fix='each line must be one flat object, e.g. {"text": "…", "label": "…"}',
                code="bad-json",
            ) from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise DataError(
                f"unreadable JSON value: {exc}",
                file=path,
                line=lineno,
                fix="write long numbers as strings",
                code="bad-json",
            ) from None
    return records


def _split_header(line: str, delimiter: str) -> list[str]:
    try:
        return [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]
    except (csv.Error, StopIteration):
        return []


def _pick_delimiter(text: str, fields: tuple[str, str]) -> str:
    """The delimiter of a CSV file among , ; tab |.

    The header naming both configured fields is the surest sign; then csv.Sniffer on
    the start of the file; then the candidate the header line holds most of.
    """
    _, header = _first_line(text)
    fits = [d for d in DELIMITERS if set(fields) <= set(_split_header(header, d))]
    if len(fits) == 1:
        return fits[0]
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _other_delimiter(header: str, used: str, fields: tuple[str, str]) -> str | None:
    """A delimiter that splits the header better than ``used`` (to say so in errors)."""
    used_cols = len(_split_header(header, used))
    best = None
    for d in DELIMITERS:
        if d == used:
            continue
        cols = _split_header(header, d)
        if set(fields) & set(cols) and len(cols) > used_cols:
            return d
        if best is None and len(cols) > max(used_cols, 1):
            best = d
    return best


def _delimiter_fix(d: str) -> str:
    shown = "'\\t'" if d == "\t" else f"'{d}'"
    return f"this file looks {DELIMITERS[d]}-separated ({shown}): " + _setting("delimiter", shown)


def _records_csv(
    text: str, path: Path, delimiter: str, fields: tuple[str, str]
) -> list[tuple[int, Any]]:
    delim = _pick_delimiter(text, fields) if delimiter == "auto" else delimiter
    _, header_line = _first_line(text)
    # A field may be as long as the file: the default cap (128 KiB) would report a
    # long text as a broken quote.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    # strict: an unclosed quote is an error instead of silently eating the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise DataError(
            f"unreadable CSV header: {exc}",
            file=path,
            line=1,
            fix="the first line must name the columns, e.g. text,label",
            code="bad-csv",
        ) from None
    header = [h.strip() for h in header]
    header_at = reader.line_num
    other = _other_delimiter(header_line, delim, fields)
    if not set(fields) <= set(header) and other is not None:
        missing = next(f for f in fields if f not in header)
        raise DataError(
            f"the header has no column '{missing}' when split at "
            f"{DELIMITERS.get(delim, repr(delim))}s (columns: {', '.join(header)})",
            file=path,
            line=header_at,
            fix=_delimiter_fix(other),
            code="bad-csv",
        )
    seen: dict[str, int] = {}
    for col, name in enumerate(header, start=1):
        if name and name in seen:
            raise DataError(
                f"column '{name}' appears twice in the header (columns {seen[name]} and {col})",
                file=path,
                line=header_at,
                fix="rename or remove one of them",
                code="duplicate-column",
            )
        seen[name] = col
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
                        fix=_columns_fix(row, header, delim, other),
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


def _columns_fix(row: list[str], header: list[str], delim: str, other: str | None) -> str:
    if other is not None:
        return _delimiter_fix(other)
    if len(row) == len(header) + 1 and not row[-1].strip():
        return "remove the delimiter at the end of this line (or add a column for it)"
    name = DELIMITERS.get(delim, repr(delim))
    return f"quote fields that contain a {name} with double quotes"


def load_examples(
    path: str | Path,
    *,
    input_field: str = "text",
    label_field: str = "label",
    fmt: str = "auto",
    encoding: str = "utf-8",
    delimiter: str = "auto",
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    task: Task = "classification",
    schema: dict[str, Any] | None = None,
    sources_field: str | None = None,
) -> list[Example]:
    """Load every record; raise :class:`DataError` listing each record that is unusable.

    Nothing is dropped silently: a record with a missing or empty field stops the
    load with its line number, so the user fixes or deletes it on purpose. For an
    extraction ``task`` the target must be a JSON object that follows ``schema``.

    Text fields take strings, and numbers as their text (``3`` is the label "3");
    booleans, null, arrays and objects are refused, and so are NaN and Infinity,
    which JSON does not have.
    """

    path = Path(path)
    raw = read_regular_file(
        path,
        max_bytes=int(max_file_mb * (1 << 20)),
        limit_name="data.max_file_mb",
        error=DataError,
        fix_path="point data.path (or data.test_path) in adaptlab.yaml at a JSONL or CSV "
        "file, relative to the project folder",
    )
    if fmt == "auto":
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            fix = "use .jsonl or .csv, or set data.format in adaptlab.yaml"
            if suffix == ".json":
                fix = "convert a JSON array to JSON Lines: jq -c '.[]' FILE > FILE.jsonl"
            raise DataError(
                f"cannot tell the format of a '{suffix or 'no extension'}' file",
                file=path,
                fix=fix,
                code="format",
            )
        fmt = FORMATS[suffix]
        if suffix == ".tsv" and delimiter == "auto":
            delimiter = "\t"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(
            f"unknown encoding '{encoding}'",
            file=path,
            fix="use a Python codec name: utf-8, cp1252, latin-1, utf-16",
            code="encoding",
        ) from None
    text = _decode(raw, path, encoding)
    fields = (input_field, label_field)
    records = (
        _records_csv(text, path, delimiter, fields) if fmt == "csv" else _records_jsonl(text, path)
    )
    if not records:
        header_only = fmt == "csv" and bool(text.strip())
        raise DataError(
            "the file holds no records" + (" (only a header)" if header_only else ""),
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
        sources = _sources(record, sources_field, path, lineno, issues) if sources_field else None
        if text_value is not None and label_value is not None:
            examples.append(Example(text_value, label_value, str(path), lineno, sources))
    if issues:
        roles = (("input", input_field), ("label", label_field))
        absent = _absent_field(records, roles, path)
        if absent is not None:
            raise absent
        raise DataError(f"{len(issues)} unusable record(s) in {path}", issues=issues)
    return examples


def _absent_field(
    records: list[tuple[int, Any]], roles: tuple[tuple[str, str], ...], path: Path
) -> DataError | None:
    """One error for a field that no record has (the file names its column otherwise),
    instead of the same missing-field issue on every line; None when some record has
    each field. Its fix names the column to use where one column is left to choose."""
    objects = [r for _, r in records if isinstance(r, dict)]
    if not objects or len(objects) < len(records):
        return None
    present = sorted({k for r in objects for k in r})
    for role, name in roles:
        if any(name in r for r in objects):
            continue
        others = {n for rl, n in roles if rl != role}
        left = [k for k in present if k not in others]
        shown = ", ".join(present[:12]) + (", …" if len(present) > 12 else "")
        pick = left[0] if len(left) == 1 else "NAME"
        choose = "" if len(left) == 1 else f" (one of: {', '.join(left[:12])})"
        return DataError(
            f"no record has the {role} field '{name}' (the records' fields: {shown})",
            file=path,
            line=records[0][0],
            fix=f"name the field that holds the {role}{choose}: for a new project "
            f"'adaptlab init DIR --data {path.name} --{role}-field {pick}', in a project "
            f"'data.{role}_field: {pick}' in adaptlab.yaml",
            code="missing-field",
        )
    return None
