"""``adaptlab data check``: validate, count and split before spending compute."""

from __future__ import annotations

import click

from adaptlab.cli.common import console, project_option

#: Rows of the label table `data check` prints; with more labels, the rarest are shown.
MAX_LABEL_ROWS = 50
#: Warnings of one kind printed in full before the rest are counted.
MAX_WARNINGS_PER_KIND = 5


@click.group()
def data() -> None:
    """Inspect and validate the project's data."""


@data.command("check")
@project_option
def check(project_dir: str) -> None:
    """Validate the data: fields, labels, duplicates, conflicts, balance, split, leakage."""
    from rich.table import Table
    from rich.text import Text

    from adaptlab.errors import DataError
    from adaptlab.project import Project

    project = Project.load(project_dir)
    report = project.check_data()
    title = f"{report.n_examples} examples, mean {report.mean_words:.1f} words"
    if report.task == "classification":
        table = Table(title=Text(title))
        table.add_column("label")
        table.add_column("examples", justify="right")
        table.add_column("description")
        # A terminal page, not 10,000 rows: the rarest labels are the ones to look at.
        by_size = sorted(report.label_counts.items(), key=lambda kv: (kv[1], kv[0]))
        shown = by_size if len(by_size) <= MAX_LABEL_ROWS else by_size[:MAX_LABEL_ROWS]
        for label, n in sorted(shown, key=lambda kv: list(report.label_counts).index(kv[0])):
            table.add_row(Text(label), str(n), Text(project.config.labels[label]))
        if len(shown) < len(by_size):
            table.caption = (
                f"the {len(shown)} rarest of {len(by_size)} labels; the others have "
                f"{by_size[len(shown)][1]} or more examples each"
            )
        console.print(table)
        if _bare_descriptions(project.config.labels):
            console.print(
                "[yellow]hint:[/] every label's description is just its name. Zero-shot "
                "classifies against these descriptions (they are its prompt): write one "
                "line per label under 'labels:' in adaptlab.yaml saying what it covers.",
                soft_wrap=True,
            )
    elif report.task == "extraction":
        table = Table(title=f"{title}; target fields")
        table.add_column("field")
        table.add_column("examples with a value", justify="right")
        for name, n in report.field_counts.items():
            table.add_row(Text(name), f"{n} ({n / max(report.n_examples, 1):.0%})")
        console.print(table)
    else:
        console.print(
            f"{title} per input, {report.mean_target_words:.1f} per reference answer",
            soft_wrap=True,
        )
    # A handful of each kind: a thousand rare labels make one point, not a thousand lines.
    by_code: dict[str, int] = {}
    for issue in report.warnings:
        by_code[issue.code] = by_code.get(issue.code, 0) + 1
        if by_code[issue.code] <= MAX_WARNINGS_PER_KIND:
            console.print(Text.assemble(("warning:", "yellow"), f" {issue}"), soft_wrap=True)
    for code, n in by_code.items():
        if n > MAX_WARNINGS_PER_KIND:
            console.print(
                Text.assemble(
                    ("warning:", "yellow"),
                    f" … and {n - MAX_WARNINGS_PER_KIND} more like these ({code})",
                ),
                soft_wrap=True,
            )
    if report.errors:
        raise DataError(f"{len(report.errors)} data error(s)", issues=report.errors)
    split = project.split()
    counts = split.counts()
    leak = (
        f"[yellow]{split.leaked} test inputs also appear in train (kept: data.leakage: warn)[/]"
        if split.leaked
        else "no test input appears in train"
    )
    console.print(
        f"[green]ok[/]: split train {counts['train']} / val {counts['val']} / test "
        f"{counts['test']} (fingerprint {split.fingerprint}); {leak}"
    )
    from adaptlab.planning import context_checks

    every = [*split.train, *split.val, *split.test]  # whichever split an input lands in
    for check in context_checks(project, split, every):  # before anything is paid for
        for line in check.lines():
            console.print(Text.assemble(("warning:", "yellow"), f" {line}"), soft_wrap=True)


def _bare_descriptions(labels: dict[str, str]) -> bool:
    """True when no description says more than its label's name (as ``init --data`` writes)."""

    def words(text: str) -> str:
        return " ".join(text.replace("_", " ").replace("-", " ").casefold().split())

    return bool(labels) and all(words(desc) == words(label) for label, desc in labels.items())
