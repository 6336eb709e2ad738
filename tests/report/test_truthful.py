"""The report and the terminal say only what is true.

A red p-value means the winner is significantly better, never the other way round; a
candidate significantly better than the winner on test is marked apart, with the
reason it was not chosen; no figure is written with an exponent or a run of zeros; a
count carries its noun in the right number; a busy machine is one line, not one per
candidate; the break-even chart names each crossing once, on a cost axis that starts
where costs can be read; and ``runs`` and ``best`` say when today's profile judged a
run other than the one stored with it. The runs are built by hand
(:mod:`tests.report.synthetic`), so every figure follows from the stored rows.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from adaptlab import Project, summarize_project
from adaptlab.cli import cli
from adaptlab.cli.rejudge import best_note
from adaptlab.core.format import (
    dollars,
    ms,
    number,
    p_value,
    plural,
    sig,
    usd,
    volume_text,
)
from adaptlab.decide.verdict import BreakEven
from adaptlab.engine.summary import ProjectSummary
from adaptlab.evaluation.cost_model import CostModel
from adaptlab.report import plots, render_report
from adaptlab.report.notes import loaded_timing_line, not_chosen_reason, standing_on_test
from tests.conftest import small_project
from tests.report.synthetic import (
    ONE_AHEAD,
    RUN_ID,
    SIGNIFICANT_ON_VAL,
    Spec,
    set_profile,
    write_project,
)
from tests.report.visible import exponents, visible_text

#: A run of zeros after the last significant digit: "0.000000", "0.0012000".
TRAILING_ZEROS = re.compile(r"\.\d*?0{3,}(?!\d)")

#: ``careful`` (9 ms) is better on test than ``quick`` (3 ms) but over a 5 ms budget.
OVER_BUDGET: dict[str, Spec] = {
    "quick": Spec((0, 150), 150, latency_ms=3.0),
    "careful": Spec((51, 200), 190, latency_ms=9.0),
}


def _summary(root: Path) -> ProjectSummary:
    return summarize_project(Project.load(root))


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def one_ahead(tmp_path: Path) -> Path:
    return write_project(tmp_path / "one-ahead", ONE_AHEAD)


# ---------------------------------------------------------------- numbers


def test_numbers_are_never_written_with_an_exponent_or_a_run_of_zeros() -> None:
    for k in range(-13, 13):
        for m in (1.0, 2.2, 9.99):
            for x in (m * 10.0**k, -m * 10.0**k):
                for f in (sig, number, dollars, usd, ms, volume_text):
                    text = f(x)
                    assert not exponents(text), (f.__name__, x, text)
                    assert not TRAILING_ZEROS.search(text), (f.__name__, x, text)
    assert sig(0.000022) == "0.000022" and sig(22_431) == "22,000" and sig(0.5) == "0.5"
    assert number(22_431.4) == "22,431" and number(8.734) == "8.73" and number(0) == "0"
    assert number(0.0000137) == "< 0.001"  # a fit of 14 µs took no time worth a digit
    assert ms(22_431.4) == "22,431 ms" and ms(math.nan) == "–"
    assert dollars(0.00000000013) == "< 0.000001" and dollars(2.871) == "2.87"
    assert usd(0.000014) == "0.000014 USD" and usd(0) == "0 USD" and usd(1234) == "1,200 USD"
    assert usd(0.00000000013) == "< 0.000001 USD"
    assert volume_text(150_000) == "150K" and volume_text(999_600) == "1M"
    assert volume_text(1_500_000) == "1.5M" and volume_text(2_400) == "2.4K"
    assert p_value(0.0004) == "< 0.001" and p_value(0.0371) == "0.037"


def test_a_count_carries_its_noun_in_the_right_number() -> None:
    assert plural(1, "request") == "1 request"
    assert plural(0, "request") == "0 requests"
    assert plural(1500, "request") == "1,500 requests"
    assert plural(3, "query") == "3 queries" and plural(2, "day") == "2 days"
    assert plural(2, "analysis", "analyses") == "2 analyses"


# ---------------------------------------------------------------- p-value colours


def _p_cell(page: str, name: str) -> str:
    row = re.search(rf'<tr data-candidate="{re.escape(html.escape(name))}".*?</tr>', page, re.S)
    assert row is not None, name
    cell = re.search(r'<td class="([^"]*)" data-label="McNemar p vs winner[^"]*"[^>]*>', row[0])
    assert cell is not None, row[0]
    return cell[1]


def test_red_means_the_winner_is_better_and_a_better_rival_is_marked_apart(
    one_ahead: Path,
) -> None:
    s = _summary(one_ahead)
    v = s.verdict
    assert v.winner == "slow"  # one example ahead on validation, nothing else apart
    assert v.test_tests["fast"].test.diff < 0 and v.test_tests["fast"].p_holm < v.alpha
    assert v.test_tests["weak"].test.diff > 0 and v.test_tests["weak"].p_holm < v.alpha
    assert [standing_on_test(v, n) for n in ONE_AHEAD] == ["winner", "better", "worse"]

    page = render_report(s)
    assert _p_cell(page, "weak").split() == ["n", "sig"]  # red: the winner is better
    assert _p_cell(page, "fast").split() == ["n", "sig-better"]  # not red: it is better
    assert _p_cell(page, "slow").split() == ["n"]
    legend = visible_text(page[page.index('id="results-legend"') :].split("</p>")[0])
    assert "A p-value in red is below α = 0.05 after Holm's correction for 2 comparisons" in (
        legend
    )
    assert "with the winner ahead" in legend
    assert "A p-value in green ▲ is below α too, with that candidate ahead" in legend
    box = visible_text(page[page.index('id="recommendation"') : page.index("</section>")])
    assert (
        "fast is significantly more accurate than the winner on test (95.0% against 75.0%, "
        "McNemar p < 0.001 after Holm's correction), but was not chosen: on validation, "
        "where candidates are chosen, the two were within noise (fast 74.5%, slow 75.0%)"
    ) in box


def test_without_a_better_rival_there_is_no_green_legend(tmp_path: Path) -> None:
    spec = {"slow": ONE_AHEAD["slow"], "weak": ONE_AHEAD["weak"]}
    page = render_report(_summary(write_project(tmp_path / "p", spec)))
    assert "sig-better" not in page.split("</style>")[1]
    assert "green" not in visible_text(page)
    assert "Holm's correction for 1 comparison," in visible_text(page)


def test_the_reason_a_better_rival_was_not_chosen(tmp_path: Path) -> None:
    s = _summary(write_project(tmp_path / "val", SIGNIFICANT_ON_VAL))
    assert s.verdict.winner == "slow" and standing_on_test(s.verdict, "fast") == "better"
    assert not_chosen_reason(s.verdict, s, "fast") == (
        "on validation, where candidates are chosen, slow was significantly ahead (95.0% "
        "against 75.0%, Holm-adjusted p < 0.001); validation and test disagree, which more "
        "labelled examples would settle"
    )
    s = _summary(write_project(tmp_path / "budget", OVER_BUDGET, latency_budget_ms=5))
    assert s.verdict.winner == "quick" and standing_on_test(s.verdict, "careful") == "better"
    reason = not_chosen_reason(s.verdict, s, "careful")
    assert reason.startswith("the task profile rules it out: careful ") and "9 ms" in reason


# ---------------------------------------------------------------- the terminal


def test_the_terminal_marks_a_better_rival_and_says_why(one_ahead: Path) -> None:
    out = _cli("report", "-p", str(one_ahead))
    assert "▲ fast is significantly more accurate than the winner on test" in out
    assert "< 0.001 ▲" in out  # the p-value, and the mark
    # One line for the busy machine, naming both candidates timed on it.
    assert out.count("other processes used") == 1
    line = " ".join(out[out.index("other processes used") :].split())
    assert line.startswith(
        "other processes used 40–65% of the machine's CPU while slow and fast were timed, "
        "so their latency and CPU cost read high; rerun them on a quiet machine: "
        "adaptlab run --force -c slow -c fast"
    )
    page = (one_ahead / "reports" / "report.html").read_text(encoding="utf-8")
    assert visible_text(page).count("other processes used") == 1


def test_one_busy_candidate_is_named_alone(one_ahead: Path) -> None:
    s = _summary(one_ahead)
    quiet = [
        dataclasses.replace(c, other_cpu_share=None) if c.name == "fast" else c
        for c in s.candidates
    ]
    assert loaded_timing_line(quiet) == (
        "other processes used 65% of the machine's CPU while slow was timed, so its latency "
        "and CPU cost read high; rerun it on a quiet machine: adaptlab run --force -c slow"
    )
    assert loaded_timing_line([c for c in quiet if c.name != "slow"]) is None


def test_no_number_in_the_terminal_or_the_report_has_an_exponent(tmp_path: Path) -> None:
    """22 s latencies, p-values of 1e-10 and costs of 1e-12 USD a request: each one
    written out for a reader, in every command that shows them."""
    root = write_project(tmp_path / "p", SIGNIFICANT_ON_VAL)
    for args in (("report",), ("decide", "--no-input"), ("runs",)):
        out = _cli(*args, "-p", str(root))
        found = [e for e in exponents(out) if RUN_ID not in e]
        assert not found, (args, found)
        assert not TRAILING_ZEROS.search(out.replace(RUN_ID, "")), args
    page = visible_text((root / "reports" / "report.html").read_text(encoding="utf-8"))
    assert not exponents(page), exponents(page)
    assert "22,431" in page


def test_a_dry_run_of_local_candidates_costs_0_usd(tmp_path: Path, example_project: Path) -> None:
    root = small_project(
        tmp_path / "p", example_project, 4, [{"name": "zs", "strategy": "zero-shot"}]
    )
    out = " ".join(_cli("run", "--dry-run", "-p", str(root)).split())
    assert "projected API cost of this run: 0 USD" in out
    assert not exponents(out) and "0.000000" not in out


# ---------------------------------------------------------------- runs and best


def test_runs_and_best_say_when_todays_profile_judged_the_run(one_ahead: Path) -> None:
    out = _cli("runs", "-p", str(one_ahead))
    assert "slow" in out and "*" not in out and "today's profile" not in out
    assert best_note(Project.load(one_ahead)) is None

    set_profile(one_ahead, monthly_requests=80_000)  # the same winner
    out = " ".join(_cli("runs", "-p", str(one_ahead)).split())
    assert "slow *" in out
    assert (
        f"run {RUN_ID}: judged under today's profile (monthly_requests 50,000 → 80,000): "
        "slow wins, as it did under the profile stored with the run"
    ) in out

    set_profile(one_ahead, latency_budget_ms=5)  # slow's 9 ms is over it now
    out = " ".join(_cli("runs", "-p", str(one_ahead)).split())
    assert "fast *" in out and "(was slow)" in out
    assert (
        "latency_budget_ms none → 5): fast wins; under the profile stored with the run, slow won"
    ) in out
    note = best_note(Project.load(one_ahead))
    assert note is not None and note.startswith(f"best is fast: run {RUN_ID} judged under")
    assert note.endswith("under the profile stored with the run, slow won")


# ---------------------------------------------------------------- the break-even chart


def _costed(s: ProjectSummary, models: dict[str, CostModel]) -> list[object]:
    return [dataclasses.replace(c, cost=models[c.name]) for c in s.candidates]


def _texts(svg: str) -> list[str]:
    return [html.unescape(t).strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_the_break_even_chart_names_each_crossing_once_above_a_readable_floor(
    one_ahead: Path,
) -> None:
    s = _summary(one_ahead)
    models = {
        "slow": CostModel("slow", "api", 0.0, 1e-4),  # the winner: no setup, dear requests
        "fast": CostModel("fast", "self-hosted", 100.0, 1e-8),
        "weak": CostModel("weak", "self-hosted", 1.0, 2e-6),
    }
    cands = _costed(s, models)
    # The table's pairs name the winner's pair the other way round: still one crossing.
    table = [BreakEven("slow", "fast", None, None, 12), BreakEven("fast", "weak", None, None, 12)]
    svg = plots.cumulative_cost(cands, table, 50_000, 12, "slow")  # type: ignore[arg-type]
    texts = _texts(svg)
    crossings = Counter(t for t in texts if " cheaper than " in t)
    assert len(crossings) == 3 and set(crossings.values()) == {1}, crossings
    assert {frozenset(re.findall(r"\b(slow|fast|weak)\b", t)) for t in crossings} == {
        frozenset({"slow", "fast"}),
        frozenset({"slow", "weak"}),
        frozenset({"fast", "weak"}),
    }
    ticks = [t for t in texts if re.fullmatch(r"[<\d.,\s]+", t)]
    assert ticks and not any(exponents(t) for t in texts)
    # The cost axis starts at a cent a month: no tick of millionths of a dollar.
    small = [t for t in ticks if "." in t and float(t.lstrip("< ").replace(",", "")) < 0.01]
    assert not small, small


def test_the_cost_floor_is_a_cent_or_three_decades_under_the_dearest() -> None:
    assert plots.cost_floor(np.array([1e-9, 0.5, 40.0])) == pytest.approx(0.01)
    assert plots.cost_floor(np.array([1e-9, 0.002, 0.5])) == pytest.approx(0.0005)
    assert plots.cost_floor(np.array([0.2, 0.5])) == pytest.approx(0.2)  # all above a cent
    assert plots.cost_floor(np.array([0.0, 0.0])) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "report", ["support_tickets_report", "support_qa_report", "banking77_report"]
)
def test_no_number_in_the_example_reports_has_an_exponent(
    report: str, request: pytest.FixtureRequest
) -> None:
    """The three reports of real (small) runs (:mod:`tests.report.conftest`): fit times
    of microseconds, setup costs of fractions of a millionth of a dollar, per-1,000 costs
    of local models: each written out, in the tables, the prose and the plots' labels."""
    path: Path = request.getfixturevalue(report)
    text = visible_text(path.read_text(encoding="utf-8"))
    assert not exponents(text), exponents(text)
    assert "0.000000" not in text
