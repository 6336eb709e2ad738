"""``adaptlab data check`` and ``data convert``: validate, count and split before spending
compute; check chat JSONL for fine-tuning and write it from a prompting candidate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from adaptlab.cli.common import console, project_option
from adaptlab.core.format import plural

if TYPE_CHECKING:
    from adaptlab.train.chat_file import ChatStats

#: Rows of the label table `data check` prints; with more labels, the rarest are shown.
MAX_LABEL_ROWS = 50
#: Warnings of one kind printed in full before the rest are counted.
MAX_WARNINGS_PER_KIND = 5
#: The model whose tokenizer counts a chat file's tokens when --model is not given.
DEFAULT_CHAT_MODEL = "gpt-4o-mini"


@click.group()
def data() -> None:
    """Validate the project's data or a chat JSONL file; convert examples to chat JSONL."""


@data.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@project_option
@click.option(
    "--model",
    default=DEFAULT_CHAT_MODEL,
    show_default=True,
    help="Chat FILE only: the model whose tokenizer counts tokens and whose context window "
    "and training price apply (an OpenAI model id, smollm2-135m-instruct, a local folder).",
)
@click.option(
    "--val",
    "val_file",
    type=click.Path(dir_okay=False),
    help="Chat FILE only: a validation "
    "file, checked too and compared with FILE for shared prompts.",
)
@click.option(
    "--test",
    "test_file",
    type=click.Path(dir_okay=False),
    help="Chat FILE only: a test file, "
    "checked too and compared with FILE (and --val) for shared prompts.",
)
@click.option(
    "--max-file-mb",
    default=1024.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Chat FILE only: refuse larger files.",
)
def check(
    file: str | None,
    project_dir: str,
    model: str,
    val_file: str | None,
    test_file: str | None,
    max_file_mb: float,
) -> None:
    """Validate the project's data, or a chat JSONL FILE for fine-tuning.

    \b
    adaptlab data check -p my-task          labelled data: fields, labels, duplicates,
                                            conflicts, balance, split, leakage
    adaptlab data check train.jsonl --val val.jsonl --model gpt-4o-mini
                                            chat data: OpenAI's format checks, tokens,
                                            duplicates, personal data, training cost
    """
    if file is None:
        if val_file or test_file:
            raise click.UsageError("--val and --test compare chat files: give FILE too")
        _check_project(project_dir)
        return
    _check_chat(file, model=model, val=val_file, test=test_file, max_file_mb=max_file_mb)


def _check_project(project_dir: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from adaptlab.core.errors import DataError
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    report = project.check_data()
    title = f"{plural(report.n_examples, 'example')}, mean {report.mean_words:.1f} words"
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
    # The prompts' language; a model that does not cover it is among the warnings below.
    for kind, line in project.language_notes(generators=False):
        warn = ("warning: ", "yellow") if kind == "warning" else ""
        console.print(Text.assemble(warn, line), soft_wrap=True)
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
        raise DataError(plural(len(report.errors), "data error"), issues=report.errors)
    split = project.split()
    counts = split.counts()
    leak = (
        f"[yellow]{plural(split.leaked, 'test input')} also "
        f"{'appears' if split.leaked == 1 else 'appear'} in train (kept: data.leakage: warn)[/]"
        if split.leaked
        else "no test input appears in train"
    )
    console.print(
        f"[green]ok[/]: split train {counts['train']} / val {counts['val']} / test "
        f"{counts['test']} (fingerprint {split.fingerprint}); {leak}"
    )
    from adaptlab.engine.planning import context_checks

    every = [*split.train, *split.val, *split.test]  # whichever split an input lands in
    for check in context_checks(project, split, every):  # before anything is paid for
        for line in check.lines():
            console.print(Text.assemble(("warning:", "yellow"), f" {line}"), soft_wrap=True)


def _bare_descriptions(labels: dict[str, str]) -> bool:
    """True when no description says more than its label's name (as ``init --data`` writes)."""

    def words(text: str) -> str:
        return " ".join(text.replace("_", " ").replace("-", " ").casefold().split())

    return bool(labels) and all(words(desc) == words(label) for label, desc in labels.items())


def _warn(text: str) -> None:
    from rich.text import Text

    console.print(Text.assemble(("warning:", "yellow"), f" {text}"), soft_wrap=True)


def _lines(lines: list[int], limit: int = 8) -> str:
    return ", ".join(map(str, lines[:limit])) + (" …" if len(lines) > limit else "")


def _check_chat(
    file: str, *, model: str, val: str | None, test: str | None, max_file_mb: float
) -> None:
    """``data check FILE``: every file's format first (exit 2 on errors), then statistics."""
    from pathlib import Path

    from rich.text import Text

    from adaptlab.core.errors import DataError
    from adaptlab.train.chat_file import chat_stats, find_chat_leakage, load_chat_file
    from adaptlab.train.chat_tokens import token_counter

    files = {"train": file, **({"val": val} if val else {}), **({"test": test} if test else {})}
    _refuse_same_file(files)
    loaded = {}
    failed: list[DataError] = []
    for name, path in files.items():
        try:
            loaded[name] = load_chat_file(Path(path), max_file_mb=max_file_mb)
        except DataError as exc:  # every file's errors at once, not one file per attempt
            failed.append(exc)
    if len(failed) == 1:
        raise failed[0]
    if failed:
        issues = [issue for exc in failed for issue in exc.issues]
        heads = "; ".join(str(exc.args[0]) for exc in failed)
        raise DataError(f"{plural(len(failed), 'chat file')} with problems: {heads}", issues=issues)
    counter = token_counter(model)
    stats = {}
    for name, (examples, warnings) in loaded.items():
        stats[name] = chat_stats(examples, counter)
        _print_chat_stats(files[name], stats[name], counter.exact)
        by_code: dict[str, int] = {}
        for issue in warnings:
            by_code[issue.code] = by_code.get(issue.code, 0) + 1
            if by_code[issue.code] <= MAX_WARNINGS_PER_KIND:
                _warn(str(issue))
        for code, n in by_code.items():
            if n > MAX_WARNINGS_PER_KIND:
                _warn(f"… and {n - MAX_WARNINGS_PER_KIND} more like these ({code})")
    if len(loaded) > 1:
        leaks = find_chat_leakage({n: loaded[n][0] for n in loaded})
        for leak in leaks:
            pairs = ", ".join(f"{a}/{b}" for a, b in leak.lines)
            _warn(
                f"{leak.count} user prompt(s) of {leak.first} ({files[leak.first]}) also "
                f"appear in {leak.second} ({files[leak.second]}) "
                f"(lines {pairs}{' …' if leak.count > len(leak.lines) else ''}); a model "
                "tested on what it trained on scores too high: remove them from one file"
            )
        if not leaks:
            console.print("[green]ok[/]: no user prompt appears in two files")
    train = stats["train"]
    _print_training_cost(model, train.token_counts, counter.exact, cap=train.cap)
    console.print(Text(f"tokens: {counter.model}, {counter.note}"), soft_wrap=True)


def _refuse_same_file(files: dict[str, str]) -> None:
    """Raise :class:`DataError` when two roles (train/val/test) name one file.

    Compared with :func:`os.path.samefile`, so ``./a.jsonl``, an absolute path and a link
    to it are one file; paths that do not exist are left to the loader's own error.
    """
    import os

    from adaptlab.core.errors import DataError

    names = list(files)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            try:
                same = os.path.samefile(files[first], files[second])
            except OSError:
                continue
            if same:
                other = "FILE" if first == "train" else f"--{first}"
                raise DataError(
                    f"--{second} names the same file as {other} ({files[first]}): every "
                    "example would be scored on what it was trained on",
                    file=files[second],
                    fix=f"give --{second} a file of other chats than {other}'s",
                )


def _print_chat_stats(file: str, stats: ChatStats, exact: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from adaptlab.data.validate import IMBALANCE_RATIO

    n = stats.n_examples
    console.print(Text(f"{file}: {plural(n, 'chat example')}", style="bold"), soft_wrap=True)
    table = Table()
    table.add_column("per example")
    for col in ("min", "p5", "median", "p95", "max", "mean"):
        table.add_column(col, justify="right")
    tok = "tokens" if exact else "tokens (estimate)"
    for name, dist in (
        ("messages", stats.messages),
        (tok, stats.tokens),
        (f"assistant {tok}", stats.assistant_tokens),
    ):
        table.add_row(
            name,
            *(f"{v:,.0f}" for v in (dist.min, dist.p5, dist.median, dist.p95, dist.max)),
            f"{dist.mean:,.1f}",
        )
    console.print(table)
    window = f"{stats.context_window:,}" if stats.context_window else "unknown"
    over = f"over the context window ({window} tokens): {stats.over_context}"
    if stats.cap != stats.context_window:
        over += (
            f"; over the provider's per-example training cap ({stats.cap:,} tokens; the "
            f"rest is cut off and not billed): {stats.over_cap}"
        )
    console.print(over, soft_wrap=True)
    console.print(
        f"system message in {stats.with_system:,} of {n:,} examples "
        f"({stats.system_prompts} distinct); without a user message: {stats.without_user}",
        soft_wrap=True,
    )
    if stats.answers is not None:
        answers = Table(title=f"answers: {len(stats.answers)} distinct")
        answers.add_column("answer")
        answers.add_column("examples", justify="right")
        answers.add_column("share", justify="right")
        top = stats.answers.most_common(MAX_LABEL_ROWS)
        for answer, count in top:
            answers.add_row(Text(answer), str(count), f"{count / n:.1%}")
        if len(stats.answers) > len(top):
            answers.caption = f"the {len(top)} most common of {len(stats.answers)}"
        console.print(answers)
        counts = list(stats.answers.values())
        if len(counts) > 1 and max(counts) > IMBALANCE_RATIO * min(counts):
            _warn(
                "answers are imbalanced: the most common has "
                f"{plural(max(counts), 'example')}, the "
                f"rarest {min(counts)} (more than {IMBALANCE_RATIO:g}x); a fine-tuned model "
                "learns to prefer the common ones: add examples of the rare answers"
            )
    dups = stats.duplicate_groups
    if dups:
        extra = sum(len(g) - 1 for g in dups)
        _warn(
            f"{extra} duplicate record(s) in {len(dups)} group(s), e.g. lines "
            f"{_lines(dups[0])}: each copy is trained on (and billed) again; keep one"
        )
    if stats.conflicts:
        _warn(
            f"{len(stats.conflicts)} prompt(s) have different answers, e.g. lines "
            f"{_lines(stats.conflicts[0])}: the model learns to pick at random; decide on one"
        )
    if not dups and not stats.conflicts:
        console.print("duplicates: none; conflicting answers: none")
    if stats.pii:
        pii = Table(title="personal data (masked)")
        pii.add_column("kind")
        pii.add_column("found", justify="right")
        pii.add_column("first places")
        for kind, finding in stats.pii.items():
            places = "; ".join(f"{f}:{line} {value}" for f, line, value in finding.places)
            pii.add_row(kind, str(finding.count), Text(places))
        console.print(pii)
        _warn(
            "personal data in training data is learnt and can be repeated to other users: "
            "remove or pseudonymise it before fine-tuning (or sending it to a provider)"
        )
    else:
        console.print("personal data: none found (e-mail, phone, IBAN, card numbers)")


def _print_training_cost(model: str, tokens: list[int], exact: bool, *, cap: int) -> None:
    """The provider's bill for fine-tuning ``model`` on these examples, when it has a price."""
    from adaptlab.train.cost import estimate_training_cost

    cost = estimate_training_cost(tokens, model, cap=cap)
    approx = "" if exact else "~"
    if cost.usd is None:  # self-hosted or not fine-tunable at a provider: no epochs to guess
        console.print(
            f"training tokens per epoch: {approx}{cost.tokens_per_epoch:,} ({cost.source})",
            soft_wrap=True,
        )
        return
    console.print(
        f"training cost for {model}: {cost.epochs} epochs (as OpenAI picks them for "
        f"{_examples(len(tokens))}) x {approx}{cost.tokens_per_epoch:,} billed tokens per "
        f"epoch = {approx}{cost.billed_tokens:,} tokens, {approx}{cost.usd:,.2f} USD "
        f"({cost.source})",
        soft_wrap=True,
    )


def _examples(n: int) -> str:
    return f"{n:,} example" + ("" if n == 1 else "s")


@data.command("convert")
@project_option
@click.option(
    "-c",
    "--candidate",
    "name",
    required=True,
    help="A prompting candidate: its template, system prompt and shots make the messages.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Chat JSONL to write [default: data/chat/<candidate>-<split>.jsonl in the project].",
)
@click.option(
    "--split",
    "which",
    type=click.Choice(["train", "val", "test", "all"]),
    default="train",
    show_default=True,
    help="Which part of the project's split to convert; 'all' writes every example.",
)
def convert(project_dir: str, name: str, output: str | None, which: str) -> None:
    """Write the project's examples as chat JSONL, through a candidate's prompt template.

    Each line is {"messages": [...]}: exactly the request the candidate sends for the
    example's input (system prompt, shots, task), then the target as the assistant's
    answer; what a provider fine-tuning job or the local trainer takes.
    """
    import json
    import os
    from pathlib import Path

    from rich.markup import escape

    from adaptlab.core.errors import ConfigError
    from adaptlab.core.files import printable_name, shell_path, write_text_atomically
    from adaptlab.core.progress import ProgressSink
    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import Models, make_context
    from adaptlab.strategies.prompting import PromptStrategy
    from adaptlab.strategies.registry import get_strategy

    project = Project.load(project_dir)
    cfg = project.config
    config_file = project.root / "adaptlab.yaml"
    prompting = [
        c.name for c in cfg.candidates if issubclass(get_strategy(c.strategy), PromptStrategy)
    ]
    cand = next((c for c in cfg.candidates if c.name == name), None)
    if cand is None or cand.name not in prompting:
        what = "no candidate" if cand is None else f"candidate '{name}' ({cand.strategy}) is not"
        raise ConfigError(
            f"{what} named '{name}'" if cand is None else f"{what} a prompting candidate",
            file=config_file,
            fix="choose a candidate with a prompt template (an llm-* strategy): "
            + (", ".join(prompting) or "none; add one with 'strategy: llm-zero-shot' and 'llm:'"),
        )
    split = project.split()
    examples = {
        "train": split.train,
        "val": split.val,
        "test": split.test,
        "all": [*split.train, *split.val, *split.test],
    }[which]
    if not examples:
        raise ConfigError(
            f"the {which} split is empty",
            file=config_file,
            fix="choose another --split, or give the split more examples (data.val_size)",
        )
    out = (
        Path(output)
        if output is not None
        else project.root / "data" / "chat" / f"{_safe_name(name)}-{which}.jsonl"
    )
    inputs = {Path(ex.file).resolve() for ex in [*split.train, *split.val, *split.test]}
    # realpath, not resolve(): a link loop at -o is the writer's clear error, not a crash
    if Path(os.path.realpath(out)) in inputs:
        raise ConfigError(
            f"'{out}' is the project's data file; converting would overwrite it",
            fix="write the chat records elsewhere: -o data/chat.jsonl",
        )
    strategy, _ = make_context(
        project, cand, project.state_dir, Models(project), ProgressSink(), with_llm=False
    )
    assert isinstance(strategy, PromptStrategy)
    # The shots come from train whatever is converted: the prompts of val and test
    # examples are what the candidate sends for them, never showing them themselves.
    strategy.select_shots(split.train)
    records = strategy.chat_records(examples)
    write_text_atomically(
        out,
        "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in records),
        newline="\n",
        what="the chat records",
    )
    llm = cfg.llms[cand.llm].name if cand.llm is not None else DEFAULT_CHAT_MODEL
    console.print(
        f"[green]ok[/]: wrote {plural(len(records), 'chat example')} ({escape(which)} split, "
        f"candidate {escape(name)}, template {escape(strategy.template.name)} @ "
        f"{strategy.template.version}) to {escape(printable_name(str(out)))}",
        soft_wrap=True,
    )
    console.print(
        f"check them: adaptlab data check {escape(shell_path(printable_name(str(out))))} "
        f"--model {escape(llm)}"
    )


def _safe_name(name: str) -> str:
    """A candidate name as a file name: letters, digits, '-', '_' and '.' kept."""
    import re

    return re.sub(r"[^\w.-]", "_", name).strip(".") or "candidate"
