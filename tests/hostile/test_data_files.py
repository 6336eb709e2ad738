"""Hostile data files (issue 7, kind 5): read as their formats define them.

Each case is one file and either loads (with the right text) or stops with the
file, the line and a fix that fits the file: a ;-file is recognised, a cp1252 file
gets cp1252 (never latin-1, which turns "€" into a control character), a device, a
FIFO or a folder is refused without being read.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hostile.conftest import GOOD, LABELS, base_config, jsonl, write_project

# --------------------------------------------------------------- helpers


def good_lines() -> list[bytes]:
    return jsonl(GOOD).splitlines(keepends=True)


def with_line(n: int, raw: bytes) -> bytes:
    """The good data with line ``n`` (1-based) replaced by ``raw``."""
    lines = good_lines()
    lines[n - 1] = raw + b"\n"
    return b"".join(lines)


def csv_rows(delim: str = ",", *, crlf: bool = False, header: str = "") -> str:
    end = "\r\n" if crlf else "\n"
    head = header or f"text{delim}label"
    rows = [f'"{row["text"]}, with a comma"{delim}{row["label"]}' for row in GOOD]
    return end.join([head, *rows]) + end


def german_excel(*, bom: bool = True) -> bytes:
    """A German Excel export: ';', CRLF, cp1252 with '€' and „quotes“, commas in texts."""
    words = {
        "billing": "Rechnung über 12,50 € doppelt abgebucht, bitte prüfen",
        "technical": "App stürzt ab, „Fehler 500“ beim Öffnen",
        "shipping": "Paket nicht angekommen, Sendung hängt seit Tagen",
        "account": "Passwort vergessen, Konto gesperrt",
        "refund": "Rückerstattung von 49,99 € für die Bestellung, bitte",
        "general": "Öffnungszeiten am Wochenende, gibt es die?",
    }
    rows = [f'"{words[r["label"]]} (Nr. {i})";{r["label"]}' for i, r in enumerate(GOOD)]
    text = "\r\n".join(["text;label", *rows]) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("cp1252")


def project(tmp_path: Path, data: bytes, name: str = "d.jsonl", **data_cfg: Any) -> Path:
    cfg = base_config(name)
    cfg["data"].update(data_cfg)
    return write_project(tmp_path / "p", data, data_name=name, config=cfg)


def split_texts(root: Path) -> list[str]:
    """The texts as the project loads them."""
    from adaptlab.engine.project import Project

    examples, _ = Project.load(root).load_data()
    return [e.text for e in examples]


# --------------------------------------------- files that must load as written


def _odd(char: str) -> bytes:
    row = {"text": f"line{char}separator inside a string", "label": "billing"}
    return with_line(3, json.dumps(row, ensure_ascii=False).encode())


LOADS: list[tuple[str, str, bytes, dict[str, Any], str | None]] = [
    # id, file name, bytes, data options, a text that must come through unchanged
    ("jsonl-u2028-in-string", "d.jsonl", _odd("\u2028"), {}, "line\u2028separator"),
    ("jsonl-u2029-in-string", "d.jsonl", _odd("\u2029"), {}, "line\u2029separator"),
    ("jsonl-u0085-in-string", "d.jsonl", _odd("\u0085"), {}, "line\u0085separator"),
    ("jsonl-x0b-x0c-in-string", "d.jsonl", _odd("\x0b\x0c"), {}, "line\x0b\x0cseparator"),
    ("jsonl-x1c-x1e-in-string", "d.jsonl", _odd("\x1c\x1d\x1e"), {}, "line\x1c\x1d\x1eseparator"),
    ("jsonl-crlf", "d.jsonl", jsonl(GOOD).replace(b"\n", b"\r\n"), {}, None),
    (
        "jsonl-mixed-line-endings",
        "d.jsonl",
        b"".join(
            line.rstrip(b"\n") + (b"\r\n" if i % 2 else b"\n")
            for i, line in enumerate(good_lines())
        ),
        {},
        None,
    ),
    (
        "jsonl-blank-and-whitespace-lines",
        "d.jsonl",
        b" \t \n\n" + b"   \n".join(good_lines()) + b"\t\n",
        {},
        None,
    ),
    ("jsonl-no-final-newline", "d.jsonl", jsonl(GOOD).rstrip(b"\n"), {}, None),
    ("jsonl-utf8-bom", "d.jsonl", b"\xef\xbb\xbf" + jsonl(GOOD), {}, None),
    (
        "jsonl-utf16-le-bom",
        "d.jsonl",
        ("\ufeff" + jsonl(GOOD).decode()).encode("utf-16-le"),
        {},
        None,
    ),
    (
        "jsonl-utf32-bom",
        "d.jsonl",
        ("\ufeff" + jsonl(GOOD).decode()).encode("utf-32-le"),
        {},
        None,
    ),
    (
        "jsonl-numbers-as-text",
        "d.jsonl",
        with_line(2, b'{"text": 12345.5, "label": "technical"}'),
        {},
        "12345.5",
    ),
    (
        "jsonl-raw-tab-in-string",
        "d.jsonl",
        with_line(2, b'{"text": "tab\there", "label": "technical"}'),
        {},
        "tab\there",
    ),
    ("csv-comma-quoted-commas", "d.csv", csv_rows(",").encode(), {}, None),
    ("csv-semicolon-sniffed", "d.csv", csv_rows(";").encode(), {}, None),
    ("csv-tab-tsv", "d.tsv", csv_rows("\t").encode(), {}, None),
    ("csv-pipe-sniffed", "d.csv", csv_rows("|").encode(), {}, None),
    ("csv-delimiter-tab-option", "d.csv", csv_rows("\t").encode(), {"delimiter": "tab"}, None),
    ("csv-semicolon-option", "d.csv", csv_rows(";").encode(), {"delimiter": ";"}, None),
    (
        "csv-bom-crlf-utf8",
        "d.csv",
        b"\xef\xbb\xbf" + csv_rows(";", crlf=True).encode(),
        {},
        None,
    ),
    (
        "csv-utf16-be-bom",
        "d.csv",
        ("\ufeff" + csv_rows(";", crlf=True)).encode("utf-16-be"),
        {},
        None,
    ),
    (
        "csv-quoted-newline",
        "d.csv",
        csv_rows(",").replace('"ticket 3', '"first line\r\nticket 3').encode(),
        {},
        "first line\r\nticket 3",
    ),
    (
        "csv-whitespace-rows",
        "d.csv",
        csv_rows(",").replace("\n", "\n , \n", 3).encode(),
        {},
        None,
    ),
    (
        "csv-cp1252-option",
        "d.csv",
        german_excel(),
        {"encoding": "cp1252"},
        "Rechnung über 12,50 € doppelt abgebucht, bitte prüfen (Nr. 0)",
    ),
    (
        "csv-cp1252-no-bom",
        "d.csv",
        german_excel(bom=False),
        {"encoding": "cp1252"},
        "App stürzt ab, „Fehler 500“ beim Öffnen (Nr. 1)",
    ),
    (
        "csv-huge-field-under-limit",
        "d.csv",
        csv_rows(",").replace("ticket 0 ", "ticket 0 " + "x" * 300_000 + " ").encode(),
        {},
        None,
    ),
    ("csv-format-option-txt", "d.txt", csv_rows(",").encode(), {"format": "csv"}, None),
]


@pytest.mark.parametrize(
    ("name", "data", "options", "text"),
    [c[1:] for c in LOADS],
    ids=[c[0] for c in LOADS],
)
def test_file_loads(
    cli: Any, tmp_path: Path, name: str, data: bytes, options: dict[str, Any], text: str | None
) -> None:
    root = project(tmp_path, data, name, **options)
    out = cli("data", "check", "-p", root).ok()
    assert "24 examples" in out
    if text is not None:
        assert any(text in t for t in split_texts(root)), text


def test_number_labels_load(cli: Any, tmp_path: Path) -> None:
    """Numbers are text: the label 3 is the label '3', named in quotes under 'labels:'."""
    rows = [{"text": r["text"], "label": LABELS.index(r["label"])} for r in GOOD]
    cfg = base_config()
    cfg["labels"] = {str(i): f"class {i}" for i in range(len(LABELS))}
    root = write_project(tmp_path / "p", jsonl(rows), config=cfg)
    cli("data", "check", "-p", root).ok()


# ------------------------------------------------ files that must be refused

# id, file name, bytes, data options, line, needles (besides file:line and 'fix:')
REFUSED: list[tuple[str, str, bytes, dict[str, Any], int | None, tuple[str, ...]]] = [
    (
        "json-nan",
        "d.jsonl",
        with_line(4, b'{"text": NaN, "label": "account"}'),
        {},
        4,
        ("NaN is not a JSON value", "never becomes the text 'nan'"),
    ),
    (
        "json-nan-label",
        "d.jsonl",
        with_line(5, b'{"text": "a real text", "label": NaN}'),
        {},
        5,
        ("NaN",),
    ),
    (
        "json-infinity",
        "d.jsonl",
        with_line(6, b'{"text": Infinity, "label": "general"}'),
        {},
        6,
        ("Infinity is not a JSON value",),
    ),
    (
        "json-minus-infinity",
        "d.jsonl",
        with_line(2, b'{"text": -Infinity, "label": "technical"}'),
        {},
        2,
        ("-Infinity",),
    ),
    (
        "json-overflowing-float",
        "d.jsonl",
        with_line(3, b'{"text": 1e999, "label": "shipping"}'),
        {},
        3,
        ("too large for a float",),
    ),
    (
        "json-5000-digit-int",
        "d.jsonl",
        with_line(3, b'{"text": ' + b"9" * 5000 + b', "label": "shipping"}'),
        {},
        3,
        ("long numbers as strings",),
    ),
    (
        "json-deep-nesting",
        "d.jsonl",
        with_line(3, b'{"text": "t", "label": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        {},
        3,
        ("nested too deeply",),
    ),
    (
        "json-duplicate-key",
        "d.jsonl",
        with_line(7, b'{"text": "t t", "label": "billing", "label": "refund"}'),
        {},
        7,
        ("key 'label' appears twice",),
    ),
    (
        "json-bool-text",
        "d.jsonl",
        with_line(8, b'{"text": true, "label": "account"}'),
        {},
        8,
        ("got a boolean", '"true"'),
    ),
    (
        "json-null-label",
        "d.jsonl",
        with_line(9, b'{"text": "some text", "label": null}'),
        {},
        9,
        ("got null",),
    ),
    (
        "json-object-text",
        "d.jsonl",
        with_line(10, b'{"text": {"a": 1}, "label": "general"}'),
        {},
        10,
        ("got an object",),
    ),
    (
        "json-array-file",
        "d.jsonl",
        json.dumps(GOOD).encode(),
        {},
        1,
        ("one JSON array, not JSON Lines", "jq -c"),
    ),
    (
        "json-array-pretty",
        "d.jsonl",
        json.dumps(GOOD, indent=2).encode(),
        {},
        1,
        ("JSON array",),
    ),
    (
        "jsonl-really-csv",
        "d.jsonl",
        csv_rows(",").encode(),
        {},
        1,
        ("looks like CSV", "data.format: csv"),
    ),
    (
        "jsonl-trailing-comma",
        "d.jsonl",
        with_line(11, b'{"text": "t t", "label": "technical",}'),
        {},
        11,
        ("trailing comma",),
    ),
    (
        "jsonl-bare-cr",
        "d.jsonl",
        jsonl(GOOD).replace(b"\n", b"\r"),
        {},
        1,
        ("bare CR",),
    ),
    (
        "jsonl-nul-byte",
        "d.jsonl",
        with_line(12, b'{"text": "nul\x00here", "label": "general"}'),
        {},
        12,
        ("NUL byte",),
    ),
    (
        "jsonl-utf16-no-bom",
        "d.jsonl",
        jsonl(GOOD).decode().encode("utf-16-le"),
        {},
        1,
        ("UTF-16-LE without a byte-order mark", "data.encoding: utf-16-le"),
    ),
    (
        "jsonl-bom-mid-file",
        "d.jsonl",
        jsonl(GOOD[:3]) + b"\xef\xbb\xbf" + jsonl(GOOD[3:]),
        {},
        4,
        ("byte-order mark",),
    ),
    (
        "cp1252-euro",
        "d.jsonl",
        with_line(8, '{"text": "12 € zu viel", "label": "account"}'.encode("cp1252")),
        {},
        8,
        ("byte 0x80", "Windows-1252", "data.encoding: cp1252", "iconv -f cp1252"),
    ),
    (
        "cp1252-quotes",
        "d.jsonl",
        with_line(5, '{"text": "„Fehler“ “x”", "label": "refund"}'.encode("cp1252")),
        {},
        5,
        ("data.encoding: cp1252",),
    ),
    (
        "latin1-only",
        "d.jsonl",
        with_line(8, '{"text": "Rücksendung", "label": "account"}'.encode("latin-1")),
        {},
        8,
        ("Latin-1", "data.encoding: latin-1"),
    ),
    (
        "german-excel-without-encoding",
        "d.csv",
        german_excel(),
        {},
        2,
        ("cp1252",),
    ),
    (
        "undefined-in-cp1252",
        "d.jsonl",
        with_line(3, b'{"text": "\x81\x8d odd", "label": "shipping"}'),
        {},
        3,
        ("neither UTF-8 nor Windows-1252",),
    ),
    (
        "semicolon-file-forced-comma",
        "d.csv",
        csv_rows(";").encode(),
        {"delimiter": ","},
        1,
        ("semicolon-separated", "data.delimiter: ';'"),
    ),
    (
        "csv-header-only",
        "d.csv",
        b"text,label\r\n",
        {},
        1,
        ("only a header",),
    ),
    (
        "csv-duplicate-column",
        "d.csv",
        csv_rows(",", header="text,label,text").replace(",billing\n", ",billing,x\n").encode(),
        {},
        1,
        ("column 'text' appears twice", "columns 1 and 3"),
    ),
    (
        "csv-trailing-delimiter",
        "d.csv",
        csv_rows(",").replace(",technical\n", ",technical,\n", 1).encode(),
        {},
        3,
        ("3 columns", "remove the delimiter at the end"),
    ),
    (
        "csv-row-after-multiline-field",
        "d.csv",
        csv_rows(",")
        .replace('"ticket 1', '"two\nlines: ticket 1')
        .replace(",shipping\n", ",ship,ping\n", 1)
        .encode(),
        {},
        5,  # line 3 of the file holds the second line of the quoted field
        ("3 columns", "quote fields that contain a comma"),
    ),
    (
        "json-extension",
        "d.json",
        json.dumps(GOOD).encode(),
        {},
        None,
        ("'.json' file", "jq -c"),
    ),
    (
        "unknown-extension",
        "d.xlsx",
        b"PK\x03\x04",
        {},
        None,
        ("'.xlsx' file", "data.format"),
    ),
    (
        "over-max-file-mb",
        "d.jsonl",
        jsonl(GOOD),
        {"max_file_mb": 0.001},
        None,
        ("over the limit data.max_file_mb", "raise data.max_file_mb"),
    ),
    (
        "huge-single-line",
        "d.jsonl",
        b'{"text": "' + b"x" * (3 << 20) + b'", "label": "billing"}\n',
        {"max_file_mb": 1},
        None,
        ("3.0 MB", "data.max_file_mb"),
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "options", "line", "needles"),
    [c[1:] for c in REFUSED],
    ids=[c[0] for c in REFUSED],
)
@pytest.mark.parametrize("command", ["data check", "run"])
def test_file_refused(
    cli: Any,
    tmp_path: Path,
    command: str,
    name: str,
    data: bytes,
    options: dict[str, Any],
    line: int | None,
    needles: tuple[str, ...],
) -> None:
    root = project(tmp_path, data, name, **options)
    where = f"{name}:{line}" if line is not None else name
    text = cli(*command.split(), "-p", root).error(where, *needles)
    if any("cp1252" in n for n in needles):
        assert "latin" not in text.lower(), "latin-1 turns '€' into a control character"
    assert not (root / ".adaptlab").exists(), "a refused file left state behind"


# ------------------------------------------- things that are not regular files


def test_directory_as_data_path(cli: Any, tmp_path: Path) -> None:
    root = project(tmp_path, jsonl(GOOD), "d.jsonl")
    (root / "data" / "d.jsonl").unlink()
    (root / "data" / "d.jsonl").mkdir()
    cli("data", "check", "-p", root).error("d.jsonl", "is a folder, not a regular file")


def test_fifo_as_data_path_does_not_hang(cli: Any, tmp_path: Path) -> None:
    root = project(tmp_path, jsonl(GOOD), "d.jsonl")
    (root / "data" / "d.jsonl").unlink()
    os.mkfifo(root / "data" / "d.jsonl")
    start = time.monotonic()
    cli("run", "-p", root).error("d.jsonl", "named pipe (FIFO)")
    assert time.monotonic() - start < 10


def test_socket_as_data_path(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, jsonl(GOOD), "d.jsonl")
    (root / "data" / "d.jsonl").unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(root / "data")  # a short relative name: AF_UNIX paths are short
        sock.bind("d.jsonl")
        cli("data", "check", "-p", root).error("d.jsonl", "is a socket")
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_device_as_data_path_is_refused(cli: Any, tmp_path: Path, path: str) -> None:
    """An absolute path leaves the project folder; /dev/zero is never read."""
    cfg = base_config()
    cfg["data"]["path"] = path
    root = write_project(tmp_path / "p", config=cfg)
    cli("data", "check", "-p", root).error("adaptlab.yaml:3", "outside the project folder")


def test_link_to_device_is_refused(cli: Any, tmp_path: Path) -> None:
    root = project(tmp_path, jsonl(GOOD), "d.jsonl")
    (root / "data" / "d.jsonl").unlink()
    (root / "data" / "d.jsonl").symlink_to("/dev/zero")
    cli("run", "-p", root).error("adaptlab.yaml:3", "outside the project folder")


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/dev/zero", "a character device"), ("/", "a folder")],
)
def test_load_examples_reads_regular_files_only(path: str, kind: str) -> None:
    """The library call (no project folder) refuses a device before reading a byte."""
    from adaptlab.core.errors import DataError
    from adaptlab.data import load_examples

    with pytest.raises(DataError, match=kind):
        load_examples(path, fmt="jsonl")


def test_test_path_folder(cli: Any, tmp_path: Path) -> None:
    root = project(tmp_path, jsonl(GOOD), "d.jsonl", test_path="data/held")
    (root / "data" / "held").mkdir()
    cli("data", "check", "-p", root).error("held", "a folder, not a regular file")


# --------------------------------------------------------- init --data FILE


def test_german_excel_end_to_end(cli: Any, tmp_path: Path) -> None:
    """init --data, data check and run (zero-shot) on a German Excel CSV."""
    src = tmp_path / "Tickets Export.csv"
    src.write_bytes(german_excel())
    target = tmp_path / "tickets"
    cli("init", target, "--data", src, "--encoding", "cp1252").ok()
    cfg = yaml.safe_load((target / "adaptlab.yaml").read_text("utf-8"))
    assert cfg["name"] == "tickets"
    assert cfg["data"]["encoding"] == "cp1252"
    assert (target / "data" / src.name).read_bytes() == src.read_bytes()
    cli("data", "check", "-p", target).ok()
    euro = "Rechnung über 12,50 € doppelt abgebucht, bitte prüfen (Nr. 0)"
    assert euro in split_texts(target)
    out = cli("run", "-p", target, "-c", "zero-shot").ok()
    assert "zero-shot" in out


def test_init_hint_for_german_excel_names_the_option(cli: Any, tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes(german_excel())
    cli("init", tmp_path / "t", "--data", src).error("export.csv:2", "--encoding cp1252")
    assert not (tmp_path / "t").exists()


def test_init_forced_comma_recognises_semicolons(cli: Any, tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes(german_excel(bom=False))
    cli("init", tmp_path / "t", "--data", src, "--encoding", "cp1252", "--delimiter", ",").error(
        "export.csv:1", "semicolon-separated", "--delimiter ';'"
    )


def test_init_takes_format_and_fields(cli: Any, tmp_path: Path) -> None:
    src = tmp_path / "rows.txt"
    rows = csv_rows("|", header="body|category")
    src.write_text(rows, encoding="utf-8")
    target = tmp_path / "piped"
    cli(
        "init",
        target,
        "--data",
        src,
        "--format",
        "csv",
        "--input-field",
        "body",
        "--label-field",
        "category",
    ).ok()
    cfg = yaml.safe_load((target / "adaptlab.yaml").read_text("utf-8"))
    assert cfg["data"] == {
        "path": "data/rows.txt",
        "input_field": "body",
        "label_field": "category",
        "format": "csv",
    }
    cli("data", "check", "-p", target).ok()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--encoding", "klingon", "unknown encoding"),
        ("--delimiter", ";;", "one character"),
        ("--delimiter", "a", "one character"),
    ],
)
def test_init_refuses_bad_options(
    cli: Any, tmp_path: Path, option: str, value: str, needle: str
) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl(GOOD))
    cli("init", tmp_path / "t", "--data", src, option, value).error(option, needle)
    assert not (tmp_path / "t").exists()


def test_init_data_fifo(cli: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "d.jsonl"
    os.mkfifo(fifo)
    cli("init", tmp_path / "t", "--data", fifo).error("d.jsonl", "named pipe")
    assert not (tmp_path / "t").exists()


def test_init_names_project_after_folder_and_explains_descriptions(
    cli: Any, tmp_path: Path
) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl(GOOD))
    target = tmp_path / "reviews"
    cli("init", target, "--data", src).ok()
    text = (target / "adaptlab.yaml").read_text("utf-8")
    assert yaml.safe_load(text)["name"] == "reviews"
    before_labels = text.split("\nlabels:")[0]
    assert "# Each label's description is the prompt that zero-shot" in before_labels
    out = cli("data", "check", "-p", target).ok()
    assert "every label's description is just its name" in out
    # once the descriptions say more, the hint goes away
    cfg = yaml.safe_load(text)
    cfg["labels"] = {k: f"tickets about {k} matters" for k in cfg["labels"]}
    (target / "adaptlab.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert "just its name" not in cli("data", "check", "-p", target).ok()


# ------------------------------------------------- extraction targets as JSON

EXTRACTION = {
    "name": "extract",
    "task": "extraction",
    "schema": {"type": "object", "properties": {"amount": {"type": "number"}}},
    "data": {"path": "data/d.csv"},
    "llms": {"chat": {"backend": "openai", "name": "gpt-4o-mini"}},
    "candidates": [{"name": "p", "strategy": "llm-zero-shot", "llm": "chat"}],
}


@pytest.mark.parametrize(
    ("cell", "needle"),
    [
        ('"{""amount"": NaN}"', "NaN is not a JSON value"),
        ('"{""amount"": 1, ""amount"": 2}"', "key 'amount' appears twice"),
        ('"{""amount"": 1e999}"', "too large for a float"),
        ('"' + "[" * 50_000 + "]" * 50_000 + '"', "nested too deeply"),
    ],
    ids=["nan", "duplicate-key", "overflow", "deep"],
)
def test_extraction_target_in_csv(cli: Any, tmp_path: Path, cell: str, needle: str) -> None:
    rows = [f'invoice {i} over {i}.50 EUR,"{{""amount"": {i}.5}}"' for i in range(8)]
    rows[3] = f"invoice three,{cell}"
    data = ("text,label\n" + "\n".join(rows) + "\n").encode()
    root = write_project(tmp_path / "p", data, data_name="d.csv", config=EXTRACTION)
    cli("data", "check", "-p", root).error("d.csv:5", needle)


def test_init_data_is_a_folder(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    cli("init", tmp_path / "t", "--data", tmp_path / "exports").error(
        "exports", "a folder, not a regular file"
    )
    assert not (tmp_path / "t").exists()
