"""Hostile adaptlab.yaml files (issue 7, kind 6): refused at load time, with the key's
own line and the fix, before anything can crash later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import GOOD, jsonl, write_project

BASE = """\
name: hostile
data:
  path: data/d.jsonl
labels:
  billing: about billing
  technical: about technical
  shipping: about shipping
  account: about account
  refund: about refund
  general: about general
candidates:
  - name: zs
    strategy: zero-shot
"""
# line:  1 name, 2 data, 3 path, 4 labels, 5-10 the labels, 11 candidates, 12 name, 13 strategy

LABELS_YES_NO = BASE.replace(
    "  billing: about billing\n  technical: about technical\n",
    "  yes: the customer agrees\n  no: the customer declines\n",
)

BOMB = (
    BASE
    + """\
task: classification
schema:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
)


def deep(n: int) -> str:
    return BASE + "evaluation: " + "[" * n + "]" * n + "\n"


def add(section: str, text: str) -> str:
    """BASE with ``text`` (indented lines) added under the top-level ``section``."""
    if f"\n{section}:\n" in "\n" + BASE:
        return BASE.replace(f"{section}:\n", f"{section}:\n{text}", 1)
    return BASE + f"{section}:\n{text}"


LLM = """\
llms:
  chat: {backend: openai, name: gpt-4o-mini}
"""

# id, yaml text, line, needles (besides 'adaptlab.yaml:LINE' and 'fix:')
CASES: list[tuple[str, str, int | None, tuple[str, ...]]] = [
    # ---- keys YAML 1.1 reads as something else than text
    ("labels-yes-no", LABELS_YES_NO, 5, ("read as a boolean", "quote it: 'yes'")),
    (
        "labels-on-off",
        BASE.replace("  shipping:", "  on:").replace("  account:", "  off:"),
        7,
        ("quote it: 'on'",),
    ),
    (
        "labels-int-keys",
        BASE.replace("  billing:", "  0:").replace("  technical:", "  1:"),
        5,
        ("read as a number", "quote it: '0'"),
    ),
    ("labels-float-key", BASE.replace("  refund:", "  1.5:"), 9, ("quote it: '1.5'",)),
    ("labels-null-key", BASE.replace("  refund:", "  null:"), 9, ("null", "quote it: 'null'")),
    ("labels-tilde-key", BASE.replace("  refund:", "  ~:"), 9, ("quote it: '~'",)),
    ("labels-empty-key", BASE.replace("  refund:", "  ? \n  :"), 9, ("(empty)", "give it a name")),
    ("labels-date-key", BASE.replace("  refund:", "  2024-01-31:"), 9, ("read as a date",)),
    ("labels-list-key", BASE.replace("  refund:", "  ? [a, b]\n  :"), 9, ("must be text",)),
    (
        "llms-int-key",
        BASE + "llms:\n  1: {backend: openai, name: gpt-4o-mini}\n",
        15,
        ("quote it: '1'",),
    ),
    (
        "params-bool-key",
        BASE.replace("strategy: zero-shot", "strategy: zero-shot\n    params: {yes: 1}"),
        14,
        ("quote it: 'yes'",),
    ),
    # ---- values YAML reads as something else than text
    (
        "description-yes",
        BASE.replace("about billing", "yes"),
        5,
        ("valid string", "quote it: 'yes'"),
    ),
    ("project-name-number", BASE.replace("name: hostile", "name: 2024"), 1, ("quote it: '2024'",)),
    (
        "candidate-name-null",
        BASE.replace("- name: zs", "- name: null"),
        12,
        ("quote it: 'null'",),
    ),
    # ---- duplicated keys at every level, both lines named
    ("duplicate-top-level", BASE + "name: other\n", 14, ("'name' appears twice", "lines 1 and 14")),
    (
        "duplicate-nested",
        BASE.replace("  path: data/d.jsonl\n", "  path: data/d.jsonl\n  path: data/e.jsonl\n"),
        4,
        ("'path' appears twice", "lines 3 and 4"),
    ),
    (
        "duplicate-label",
        BASE.replace("  general: about general", "  general: about general\n  billing: again"),
        11,
        ("'billing' appears twice", "lines 5 and 11"),
    ),
    (
        "duplicate-in-candidate",
        BASE.replace("strategy: zero-shot", "strategy: zero-shot\n    strategy: rag"),
        14,
        ("'strategy' appears twice",),
    ),
    (
        "duplicate-in-params",
        BASE.replace("strategy: zero-shot", "strategy: rag\n    params: {top_k: 3, top_k: 30}"),
        14,
        ("'top_k' appears twice",),
    ),
    # ---- aliases, merge keys, nesting, size
    ("alias-bomb-under-schema", BOMB, 17, ("aliases", "gigabytes")),
    (
        "single-alias",
        BASE.replace("about billing", "&d about billing").replace("about refund", "*d"),
        9,
        ("aliases (*name) are not allowed",),
    ),
    (
        "merge-key",
        BASE.replace("strategy: zero-shot", "strategy: zero-shot\n    <<: {params: {}}"),
        14,
        ("merge keys",),
    ),
    ("nesting-200-deep", deep(200), 14, ("nested more than 64 levels",)),
    ("nesting-5000-deep", deep(5000), 14, ("nested more than",)),
    # ---- seeds numpy and torch cannot take
    ("seed-negative", BASE + "seed: -1\n", 14, ("seed", "greater than or equal to 0", "2**32")),
    ("seed-2-pow-40", BASE + "seed: 1099511627776\n", 14, ("seed", "less than 4294967296")),
    ("seed-2-pow-32", BASE + "seed: 4294967296\n", 14, ("less than",)),
    ("seed-expression", BASE + "seed: 2**40\n", 14, ("seed", "valid integer")),
    ("seed-bool", BASE + "seed: yes\n", 14, ("seed", "valid integer")),
    ("seed-float", BASE + "seed: 1.5\n", 14, ("seed", "valid integer")),
    ("seed-huge", BASE + "seed: " + "9" * 40 + "\n", 14, ("larger than any setting",)),
    # ---- numbers that are not finite, or far out of range
    ("test-size-nan", add("data", "  test_size: .nan\n"), 3, (".nan is not a finite number",)),
    (
        "cpu-price-inf",
        BASE + "cost:\n  cpu_hour_usd: .inf\n",
        15,
        (".inf is not a finite",),
    ),
    (
        "param-minus-inf",
        BASE.replace("strategy: zero-shot", "strategy: rag\n    params: {top_k: -.Inf}"),
        14,
        ("not a finite number",),
    ),
    (
        "llm-timeout-inf",
        BASE + "llms:\n  chat: {backend: openai, name: gpt-4o-mini, timeout_s: .inf}\n",
        15,
        ("not a finite",),
    ),
    ("batch-size-huge", BASE + "model:\n  batch_size: 1000000000\n", 15, ("batch_size",)),
    ("max-seq-length-zero", BASE + "model:\n  max_seq_length: 0\n", 15, ("max_seq_length",)),
    ("test-size-zero", add("data", "  test_size: 0\n"), 3, ("test_size", "greater than 0")),
    ("max-file-mb-zero", add("data", "  max_file_mb: 0\n"), 3, ("max_file_mb",)),
    ("max-file-mb-negative", add("data", "  max_file_mb: -1\n"), 3, ("max_file_mb",)),
    ("concurrency-zero", BASE + LLM.replace("}", ", max_concurrency: 0}"), 15, ("max_conc",)),
    # ---- strings with NUL or control characters
    ("nul-in-name", BASE.replace("name: hostile", 'name: "hos\\0tile"'), 1, ("U+0000",)),
    (
        "escape-in-candidate",
        BASE.replace("- name: zs", '- name: "\\e[31mred"'),
        12,
        ("U+001B",),
    ),
    ("bell-in-label", BASE.replace("  refund:", '  "ref\\aund":'), 9, ("U+0007",)),
    ("raw-control-byte", BASE.replace("about refund", "about\x07refund"), 9, ("unreadable YAML",)),
    ("c1-control", BASE.replace("about refund", '"about\\x85refund"'), 9, ("U+0085",)),
    # ---- names that end up in paths and terminal lines
    ("candidate-name-empty", BASE.replace("- name: zs", "- name: ''"), 12, ("empty",)),
    ("candidate-name-blank", BASE.replace("- name: zs", "- name: '   '"), 12, ("empty",)),
    (
        "candidate-name-slash",
        BASE.replace("- name: zs", "- name: ../../etc"),
        12,
        ("path separator",),
    ),
    (
        "candidate-name-backslash",
        BASE.replace("- name: zs", "- name: 'a\\b'"),
        12,
        ("path separator",),
    ),
    ("candidate-name-dotdot", BASE.replace("- name: zs", "- name: '..'"), 12, ("'..'",)),
    (
        "candidate-name-spaces",
        BASE.replace("- name: zs", "- name: ' zs'"),
        12,
        ("whitespace", "write it as 'zs'"),
    ),
    ("candidate-name-long", BASE.replace("- name: zs", "- name: " + "z" * 300), 12, ("300",)),
    (
        "llm-name-slash",
        BASE + "llms:\n  a/b: {backend: openai, name: gpt-4o-mini}\n",
        15,
        ("path separator",),
    ),
    ("label-surrounding-space", BASE.replace("  refund:", "  ' refund':"), 9, ("whitespace",)),
    ("project-name-empty", BASE.replace("name: hostile", "name: ''"), 1, ("project name",)),
    ("input-field-empty", add("data", "  input_field: ''\n"), 3, ("input_field is empty",)),
    # ---- paths that leave the project folder
    (
        "data-path-absolute",
        BASE.replace("data/d.jsonl", "/etc/passwd"),
        3,
        ("outside the project folder", "copy the file"),
    ),
    ("data-path-dotdot", BASE.replace("data/d.jsonl", "../d.jsonl"), 3, ("outside",)),
    ("data-path-home", BASE.replace("data/d.jsonl", "/root/.ssh/id_rsa"), 3, ("outside",)),
    ("data-path-empty", BASE.replace("data/d.jsonl", "''"), 3, ("data.path is empty",)),
    ("test-path-outside", add("data", "  test_path: ../../t.jsonl\n"), 3, ("data.test_path",)),
    (
        "schema-file-outside",
        BASE.replace("name: hostile", "name: hostile\ntask: extraction\nschema: ../s.json"),
        3,
        ("schema '../s.json' points outside",),
    ),
    (
        "template-outside",
        BASE.replace(
            "strategy: zero-shot",
            "strategy: prompt\n    llm: chat\n    params: {template: ../../evil.j2}",
        )
        + LLM,
        15,
        ("params.template", "outside"),
    ),
    # ---- data options
    ("delimiter-two-chars", add("data", "  delimiter: ';;'\n"), 3, ("one character",)),
    ("delimiter-quote", add("data", "  delimiter: '\"'\n"), 3, ("one character",)),
    ("encoding-unknown", add("data", "  encoding: klingon\n"), 3, ("unknown encoding",)),
    # ---- devices that are not there (see also the torch-backed cases below)
    ("device-unknown", BASE + "model:\n  device: gpu\n", 15, ("unknown device 'gpu'",)),
    ("device-bad-index", BASE + "model:\n  device: 'cuda:x'\n", 15, ("unknown device",)),
    # ---- the file itself
    ("not-utf8", BASE.replace("about refund", "Rückgabe"), None, ("not valid UTF-8",)),
]


def _write(tmp_path: Path, text: str | bytes) -> Path:
    root = write_project(tmp_path / "p")
    cfg = root / "adaptlab.yaml"
    if isinstance(text, bytes):
        cfg.write_bytes(text)
    elif "Rückgabe" in text:
        cfg.write_bytes(text.encode("latin-1"))
    else:
        cfg.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("text", "line", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_config_refused(
    cli: Any, tmp_path: Path, text: str, line: int | None, needles: tuple[str, ...]
) -> None:
    root = _write(tmp_path, text)
    where = f"adaptlab.yaml:{line}" if line is not None else "adaptlab.yaml"
    cli("data", "check", "-p", root).error(where, *needles)
    assert not (root / ".adaptlab").exists()


@pytest.mark.parametrize("command", ["data check", "run", "prompt render -c zs"])
def test_alias_bomb_fails_fast_everywhere(cli: Any, tmp_path: Path, command: str) -> None:
    """The bomb under 'schema:' is refused when the file is read: fast, no memory growth."""
    import resource

    root = _write(tmp_path, BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    cli(*command.split(), "-p", root).error("adaptlab.yaml:17", "aliases")
    assert time.monotonic() - start < 5
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100_000, f"memory grew by {grown_kb} kB"


def test_config_too_large(cli: Any, tmp_path: Path) -> None:
    root = _write(tmp_path, BASE + "# " + "x" * (1 << 20) + "\n")
    cli("data", "check", "-p", root).error("adaptlab.yaml", "1 MB", "move data into data/")


def test_config_is_a_folder(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    (root / "adaptlab.yaml").unlink()
    (root / "adaptlab.yaml").mkdir()
    cli("run", "-p", root).error("adaptlab.yaml", "a folder, not a regular file")


def test_config_is_a_fifo(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    (root / "adaptlab.yaml").unlink()
    os.mkfifo(root / "adaptlab.yaml")
    cli("data", "check", "-p", root).error("adaptlab.yaml", "named pipe")


def test_data_path_link_leaving_project(cli: Any, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text('{"text": "secret", "label": "billing"}\n')
    root = write_project(tmp_path / "p")
    (root / "data" / "d.jsonl").unlink()
    (root / "data" / "d.jsonl").symlink_to(outside)
    cli("data", "check", "-p", root).error("adaptlab.yaml:3", "outside the project folder")


# ------------------------------------------------ what must still load


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            BASE.replace("  billing:", "  'yes':").replace("  technical:", "  'no':"),
            id="quoted-yes-no-labels",
        ),
        pytest.param(
            BASE.replace("  billing:", "  '0':").replace("  technical:", "  '1':"),
            id="quoted-int-labels",
        ),
        pytest.param("\ufeff" + BASE, id="utf8-bom"),
        pytest.param(BASE.replace("about refund", '"about\\trefund"'), id="tab-in-value"),
        pytest.param(BASE + "anchor_free: 1\n", id="unknown-key-still-named"),
        pytest.param(add("data", "  delimiter: tab\n"), id="delimiter-tab"),
        pytest.param(BASE + "seed: 4294967295\n", id="seed-max"),
        pytest.param(BASE + "seed: 0\n", id="seed-zero"),
        pytest.param(BASE + "model:\n  device: auto\n", id="device-auto"),
    ],
)
def test_config_loads(cli: Any, tmp_path: Path, text: str) -> None:
    root = _write(tmp_path, text)
    result = cli("data", "check", "-p", root)
    if "anchor_free" in text:
        result.error("adaptlab.yaml:14", "unknown key 'anchor_free'")
        return
    labels = ("yes", "no") if "'yes'" in text else ("0", "1") if "'0'" in text else ()
    if labels:
        # the data's labels differ, so the check stops at the data, not at the config
        result.error("unknown label")
        return
    result.ok()


# --------------------------------------- devices, checked with torch only for a GPU


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(
    ("yaml_tail", "line", "needles"),
    [
        ("model:\n  device: cuda\n", 15, ("model.device is 'cuda'", "no CUDA GPU")),
        ("model:\n  device: 'cuda:3'\n", 15, ("no CUDA GPU",)),
        ("model:\n  device: mps\n", 15, ("no MPS",)),
        (
            "llms:\n  local: {backend: hf, name: ./m, device: cuda}\n",
            15,
            ("llms.local.device is 'cuda'",),
        ),
    ],
    ids=["cuda", "cuda-3", "mps", "llm-hf-cuda"],
)
def test_device_missing(
    cli: Any, tmp_path: Path, no_gpu: None, yaml_tail: str, line: int, needles: tuple[str, ...]
) -> None:
    root = _write(tmp_path, BASE + yaml_tail)
    cli("run", "-p", root).error(f"adaptlab.yaml:{line}", *needles, "cpu")


def test_device_index_beyond_count(cli: Any, tmp_path: Path, one_gpu: None) -> None:
    root = _write(tmp_path, BASE + "model:\n  device: 'cuda:3'\n")
    cli("data", "check", "-p", root).error("adaptlab.yaml:15", "1 CUDA GPU(s), numbered from 0")


def test_cpu_config_does_not_import_torch(tmp_path: Path) -> None:
    root = _write(tmp_path, BASE + "model:\n  device: cpu\n")
    code = (
        "import sys; from adaptlab.engine import load_config; "
        f"load_config({str(root)!r}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


EXTRACTION = """\
name: extract
task: extraction
schema: schema.json
data:
  path: data/d.jsonl
llms:
  chat: {backend: openai, name: gpt-4o-mini}
candidates:
  - {name: p, strategy: llm-zero-shot, llm: chat}
"""


@pytest.mark.parametrize(
    ("schema", "needles"),
    [
        (b'{"type": "object", "maximum": NaN}', ("NaN is not a JSON value",)),
        (b'{"type": "object", "type": "array"}', ("key 'type' appears twice",)),
        (b"[" * 100_000 + b"]" * 100_000, ("nested too deeply",)),
        (b'{"type": "obj\xe9ct"}', ("not valid UTF-8",)),
        (None, ("named pipe",)),
        (b"", ("not valid JSON",)),
    ],
    ids=["nan", "duplicate-key", "deep", "not-utf8", "fifo", "empty"],
)
def test_schema_file(
    cli: Any, tmp_path: Path, schema: bytes | None, needles: tuple[str, ...]
) -> None:
    root = _write(tmp_path, EXTRACTION)
    if schema is None:
        os.mkfifo(root / "schema.json")
    else:
        (root / "schema.json").write_bytes(schema)
    start = time.monotonic()
    cli("data", "check", "-p", root).error("schema.json", *needles)
    assert time.monotonic() - start < 10


def test_data_outside_allowed_by_the_users_environment(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADAPTLAB_DATA_DIRS (the user's setting, not the project's) lets data live elsewhere;
    it opens data paths only, never template or schema files."""
    shared = tmp_path / "datasets"
    shared.mkdir()
    (shared / "d.jsonl").write_bytes(jsonl(GOOD))
    root = write_project(tmp_path / "p")
    cfg = (root / "adaptlab.yaml").read_text().replace("data/d.jsonl", str(shared / "d.jsonl"))
    (root / "adaptlab.yaml").write_text(cfg)
    cli("data", "check", "-p", root).error("outside the project folder", "ADAPTLAB_DATA_DIRS")
    monkeypatch.setenv("ADAPTLAB_DATA_DIRS", str(shared))
    cli("data", "check", "-p", root).ok()
