"""Terminal tables at the width they are printed: no name broken inside a word, no
number cut, at 80 columns and below (issue 22)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from adaptlab.cli.common import fitted_table, wrap_name

NAMES = [
    "zero-shot",
    "smollm2-135m-instruct-zero-shot\n★ winner, cached",
    "few-shot-8",
    "rag-knn",
    "tfidf-baseline",
    "finetune_all_layers",
    "gpt-4o-mini.few-shot",
]
COLUMNS = [
    ("acc. %\n95% CI", False),
    ("val/cv\n%", False),
    ("macro\nF1 %", True),
    ("p vs\nwinner", False),
    ("ms p50\np95", True),
    ("fit s", True),
    ("USD per\n1k req", False),
    ("setup\nUSD", True),
]


def _values(i: int) -> list[str]:
    return [
        f"{64 + i}.0\n{60 + i}.4–{70 + i}.1",
        f"{71 + i}.3\ncv",
        f"{55 + i}.2",
        f"< 0.00{i + 1}",
        f"{1.6 * (i + 1):.1f}\n{331 * (i + 1):,}",
        f"{19 * (i + 1):,}",
        f"0.0{i}21",
        f"{i * 4.5:.2f}",
    ]


def _render(width: int) -> str:
    rows = [(name, _values(i)) for i, name in enumerate(NAMES)]
    out = io.StringIO()
    Console(file=out, width=width).print(fitted_table("results", "candidate", COLUMNS, rows))
    return out.getvalue()


@pytest.mark.parametrize("width", [120, 100, 80, 72, 60])
def test_names_break_only_between_words_and_numbers_are_whole(width: int) -> None:
    text = _render(width)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    for name in NAMES:
        # every piece between separators is printed whole somewhere
        for piece in name.replace("\n", " ").replace("_", "-").replace(".", "-").split("-"):
            for word in piece.split():
                assert word in text, f"{word!r} of {name!r} cut at {width} columns:\n{text}"
    shown = set(text.replace("\n", " ").split())
    left_out = [w.strip(",") for w in " ".join(text.split("left out at this width:")[1:]).split()]
    kept = [j for j, (head, _) in enumerate(COLUMNS) if head.split()[-1] not in left_out]
    assert len(kept) >= 4  # the columns that may not be left out
    for i in range(len(NAMES)):
        for j in kept:
            for part in _values(i)[j].split("\n"):
                assert part.split()[-1] in shown, f"{part!r} cut at {width} columns:\n{text}"


@pytest.mark.parametrize("header", ["candidate", "kandidatenname"])
def test_the_name_header_is_never_broken_inside_a_word(header: str) -> None:
    # Names of short pieces leave the header the longest word of the column.
    rows = [(name, _values(i)) for i, name in enumerate(["a-b-c", "lora-\nuntuned", "x"])]
    out = io.StringIO()
    Console(file=out, width=80).print(fitted_table("results", header, COLUMNS, rows))
    assert header in out.getvalue().replace("\n", " ").split(), out.getvalue()


def test_wrap_name_breaks_after_separators_only() -> None:
    assert wrap_name("smollm2-135m-instruct", 14) == "smollm2-135m-\ninstruct"
    assert wrap_name("smollm2-135m-instruct", 30) == "smollm2-135m-instruct"
    assert wrap_name("a_b/c.d e", 2) == "a_\nb/\nc.\nd\ne"
    assert wrap_name("unbreakable", 4) == "unbreakable"  # whole on its own line
    assert wrap_name("x\n★ winner, cached", 9) == "x\n★ winner,\ncached"
