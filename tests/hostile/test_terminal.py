"""Kind 11: terminal text is text.

Labels, candidate names, project names, paths and error texts holding square
brackets are printed as written (rich would read ``[bold]`` as a style and
``[/]`` as a crash); at 80 columns, also when piped, the tables never cut a
number with "…" and the recommendation never breaks inside a word; and other
libraries' progress bars do not mix into adaptlab's own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, summarize_project
from tests.conftest import adaptlab_process
from tests.fakes.fake_llm import FakeLLMServer
from tests.hostile.conftest import GOOD, base_config, jsonl, write_project
from tests.hostile.projects import llm_project, oracle, stored_project

BRACKETS = ["billing[/]", "[bold]urgent", "[redacted]", "[/]", "[red]x[/red]", "a[link=x]b"]
# Names become parts of file names, so a '/' is refused there (with the name, literally).
NAMES = ["[bold]gpt", "[redacted]", "a[link=x]b", "[red]x", "gpt[", "]["]


@pytest.fixture
def server() -> Any:
    with FakeLLMServer(oracle) as s:
        yield s


def _relabel(name: str) -> tuple[bytes, dict[str, str]]:
    rows = [{**r, "label": name if r["label"] == "billing" else r["label"]} for r in GOOD]
    labels = {r["label"]: f"tickets about {r['label']} [see docs]" for r in rows}
    return jsonl(rows), labels


@pytest.mark.parametrize("label", BRACKETS)
def test_labels_with_brackets_in_data_check(cli: Any, tmp_path: Path, label: str) -> None:
    data, labels = _relabel(label)
    cfg = base_config(labels=labels)
    root = write_project(tmp_path / "p", data, config=cfg)
    out = cli("data", "check", "-p", root).ok()
    assert label in out
    assert "[see docs]" in out


@pytest.mark.parametrize("label", BRACKETS[:3])
def test_labels_with_brackets_in_run_and_report(
    cli: Any, tmp_path: Path, server: FakeLLMServer, label: str
) -> None:
    data, labels = _relabel(label)
    root = llm_project(tmp_path / "p", server.base_url, labels=labels, data=data)
    cli("run", "-p", root).ok()
    cli("report", "-p", root).ok()
    html = (root / "reports" / "report.html").read_text(encoding="utf-8")
    assert f"<td>{label}</td>" in html  # the per-class table


@pytest.mark.parametrize("name", NAMES)
def test_candidate_names_with_brackets(
    cli: Any, tmp_path: Path, server: FakeLLMServer, name: str
) -> None:
    root = llm_project(tmp_path / "p", server.base_url, names=(name, "plain"))
    out = cli("run", "-p", root).ok()
    assert f"▶ {name}" in out  # the progress line
    assert f"recommendation: {name}" in out or f"{name} " in out  # the table
    out = cli("report", "-p", root).ok()
    assert name in out
    out = cli("run", "--dry-run", "-p", root).ok()
    assert name in out


@pytest.mark.parametrize("name", ["billing[/]", "[red]x[/red]"])
def test_a_refused_candidate_name_is_printed_as_written(
    cli: Any, tmp_path: Path, server: FakeLLMServer, name: str
) -> None:
    root = llm_project(tmp_path / "p", server.base_url, names=(name,))
    assert f"'{name}'" in cli("run", "-p", root).error()


@pytest.mark.parametrize("project", ["[redacted] tickets", "[bold]prod", "support[x"])
def test_project_names_with_brackets(
    cli: Any, tmp_path: Path, server: FakeLLMServer, project: str
) -> None:
    root = llm_project(tmp_path / "p", server.base_url, project=project)
    assert f"{project}: 6 test examples" in cli("run", "-p", root).ok()


@pytest.mark.parametrize("folder", ["proj[/]", "[bold]p", "[redacted]"])
def test_paths_with_brackets(cli: Any, tmp_path: Path, server: FakeLLMServer, folder: str) -> None:
    root = llm_project(tmp_path / folder, server.base_url)
    # Wide enough that no temporary folder's length wraps the path (CI's, pytest-xdist's).
    out = cli("run", "-p", root, columns=1000).ok()
    assert str(root / ".adaptlab" / "runs.db") in out
    out = cli("report", "-p", root, columns=1000).ok()
    assert str(root / "reports" / "report.html") in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "-c", "[redacted]"), "no candidate named [redacted]"),
        (("run", "-c", "gpt[/]"), "no candidate named gpt[/]"),
        (("report", "--run-id", "[bold]r1"), "no run '[bold]r1'"),
    ],
)
def test_error_texts_with_brackets(
    cli: Any, tmp_path: Path, server: FakeLLMServer, args: tuple[str, ...], needle: str
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    assert needle in cli(*args, "-p", root).error()


@pytest.mark.parametrize(
    "message", ["the key [redacted] was refused", "unclosed [bold", "closing [/] tag"]
)
def test_the_error_printer_prints_messages_as_written(
    cli: Any, tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    from adaptlab.core.errors import AdaptlabError

    def refuse(*args: Any, **kw: Any) -> float:
        raise AdaptlabError(message, fix="check [the] key")

    monkeypatch.setattr("adaptlab.engine.runner.run_candidate", refuse)
    root = llm_project(tmp_path / "p", server.base_url)
    text = cli("run", "-p", root).error()
    assert message in text and "fix: check [the] key" in text


def test_ctrl_c_outside_run_says_interrupted(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 40)

    def interrupt(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("adaptlab.report.write_report", interrupt)
    result = cli("report", "-p", root)
    assert result.code == 130 and "interrupted" in result.text
    assert "aborted" not in result.text.lower()


def test_a_missing_data_path_with_brackets(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", config=base_config("[bold]tickets[/].jsonl"))
    assert "[bold]tickets[/].jsonl" in cli("data", "check", "-p", root).error()


# ---------------------------------------------------------------- 80 columns


LONG = (
    "few-shot-logistic-regression-k16-stratified",
    "retrieval-augmented-top8-distance-weighted",
    "fine-tune-head-5-epochs-lr3e-5",
)


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+\.\d+", text))


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("names", [LONG, ("zs", "rag")], ids=["long-names", "short-names"])
def test_tables_never_cut_numbers(
    cli: Any, tmp_path: Path, columns: int, names: tuple[str, ...]
) -> None:
    root = stored_project(
        tmp_path / "p", ["billing", "shipping", "refund", "account"], 60, names=names
    )
    result = cli("report", "-p", root, columns=columns)
    out = result.ok()
    assert "…" not in result.stdout
    for line in result.stdout.splitlines():
        assert len(line) <= columns, line
    # Every quality and its interval is printed whole (what the full-width table shows).
    wide = cli("report", "-p", root, columns=200).stdout
    summary = summarize_project(Project.load(root))
    for c in summary.candidates:
        assert f"{100 * c.quality:.1f}" in out
        assert f"{100 * c.quality_ci.low:.1f}–{100 * c.quality_ci.high:.1f}" in out
    assert _numbers(result.stdout) <= _numbers(wide)


@pytest.mark.parametrize("columns", [40, 30])
def test_a_very_narrow_terminal_folds_numbers_rather_than_cutting_them(
    cli: Any, tmp_path: Path, columns: int
) -> None:
    root = stored_project(tmp_path / "p", ["billing", "shipping", "refund"], 60, names=LONG)
    result = cli("report", "-p", root, columns=columns)
    result.ok()
    assert "…" not in result.stdout
    assert "left out at this width" in " ".join(result.stdout.split())


@pytest.mark.parametrize("columns", [80, 50])
def test_the_recommendation_never_breaks_inside_a_word(
    cli: Any, tmp_path: Path, columns: int
) -> None:
    root = stored_project(tmp_path / "p", ["billing", "shipping", "refund"], 60, names=LONG)
    result = cli("report", "-p", root, columns=columns)
    result.ok()
    words = set(result.stdout.split())
    summary = summarize_project(Project.load(root))
    for reason in summary.recommendation.reasons:
        for word in reason.split():
            if len(word) < columns - 2:
                assert word in words, f"{word!r} was broken across lines"


def test_dry_run_at_80_columns(cli: Any, tmp_path: Path, server: FakeLLMServer) -> None:
    root = llm_project(tmp_path / "p", server.base_url, names=LONG)
    result = cli("run", "--dry-run", "-p", root, columns=80)
    result.ok()
    assert "…" not in result.stdout


# ---------------------------------------------------------------- other progress bars


@pytest.mark.timeout(240)
def test_other_libraries_progress_bars_stay_out(tmp_path: Path) -> None:
    """A real run that loads the encoder: only adaptlab's own lines on the terminal."""
    cfg = base_config(candidates=[{"name": "zs", "strategy": "zero-shot"}])
    cfg["evaluation"] = {"latency_samples": 2, "bootstrap_resamples": 100}
    root = write_project(tmp_path / "p", config=yaml.safe_load(yaml.safe_dump(cfg)))
    proc = adaptlab_process("run", "-p", str(root))
    out, _ = proc.communicate(timeout=220)
    assert proc.returncode == 0, out
    for foreign in ("Loading weights", "Batches", "it/s]", "Downloading", "Fetching"):
        assert foreign not in out, out
    assert "✓ zs" in out


def test_data_check_with_a_thousand_labels_prints_one_page(cli: Any, tmp_path: Path) -> None:
    labels = [f"intent_{i:04d}" for i in range(1000)]
    rows = [{"text": f"request {j} for {lab} case", "label": lab} for lab in labels for j in (1, 2)]
    rows.append({"text": "one more for the first intent", "label": labels[0]})
    cfg = base_config(labels={lab: f"about {lab}" for lab in labels})
    root = write_project(tmp_path / "p", jsonl(rows), config=cfg)
    out = cli("data", "check", "-p", root).stdout
    table = out.split("warning:")[0]
    shown = [lab for lab in labels if lab in table]
    assert len(shown) == 50, len(shown)
    assert labels[0] not in table  # it has 3 examples, the rarest have 2
    assert "the 50 rarest of 1000 labels" in " ".join(out.split())
    assert "… and 995 more like these" in " ".join(out.split())  # 1000 under 10, 5 shown
