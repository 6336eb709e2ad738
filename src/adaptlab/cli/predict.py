"""``adaptlab predict``: answers of a candidate (or an exported model) as JSON Lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from adaptlab.cli.common import err_console, project_option


@click.command()
@project_option
@click.option(
    "-c", "--candidate", default=None, help="Candidate of the latest run; 'best': the winner."
)
@click.option(
    "-m",
    "--model",
    "model_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="An exported model folder (adaptlab export --candidate); no project needed.",
)
@click.option("-o", "--output", default=None, help="File to write (default: standard output).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="Text encoding of INPUTS (a UTF-8 byte-order mark is skipped).",
)
@click.argument("inputs", default="-", type=click.Path(dir_okay=False, allow_dash=True))
def predict(
    project_dir: str,
    candidate: str | None,
    model_dir: Path | None,
    output: str | None,
    batch_size: int,
    encoding: str,
    inputs: str,
) -> None:
    """Answer every input in INPUTS (a file, or - for standard input) as JSON Lines.

    INPUTS holds one input per line, or JSON Lines with the project's input field (or
    'text') and an optional 'id'. Each output line has the input's id (or line number),
    the candidate, the label (or output), its score and, for generative candidates,
    the parse status and raw answer: the same object 'POST /v1/predict' returns.

    \b
    adaptlab predict -p my-task -c best inputs.txt > answers.jsonl
    echo "my card was charged twice" | adaptlab predict --model ./model
    """
    from adaptlab.cli.progress import RichProgress
    from adaptlab.engine.artifact import load_model, open_candidate
    from adaptlab.serve.answers import answer_json, read_inputs

    if (candidate is None) == (model_dir is None):
        raise click.UsageError("give either --candidate (with -p) or --model")
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise click.BadParameter(
            f"unknown encoding '{encoding}'", param_hint="--encoding"
        ) from None

    with RichProgress(err_console) as progress:
        if model_dir is not None:
            model = load_model(model_dir, progress=progress)
        else:
            from adaptlab.cli.common import require_runs
            from adaptlab.engine.project import Project

            project = Project.load(project_dir)
            require_runs(project)
            assert candidate is not None
            if candidate == "best":
                from adaptlab.cli.rejudge import best_note

                note = best_note(project)
                if note is not None:
                    err_console.print(note, markup=False, soft_wrap=True)
            model = open_candidate(project, candidate, progress=progress)
    field = model.manifest.input_field
    if inputs == "-":
        rows = list(read_inputs(sys.stdin.buffer.read(), "<stdin>", field, encoding))
    else:
        from adaptlab.store.files import os_error

        try:
            data = Path(inputs).read_bytes()
        except OSError as exc:
            raise os_error(exc, "the inputs file") from exc
        rows = list(read_inputs(data, inputs, field, encoding))
    out = sys.stdout if output is None else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with (
            RichProgress(err_console) as progress,
            progress.task("predicting", len(rows)) as advance,
        ):
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                preds = model.predict([r.text for r in batch])
                for row, pred in zip(batch, preds, strict=True):
                    obj = {"id": row.id if row.id is not None else str(row.line), "input": row.text}
                    obj.update(answer_json(pred, model.task, model.name))
                    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                out.flush()
                advance(len(batch))
    finally:
        if output is not None:
            out.close()
    if output is not None:
        from adaptlab.core.format import plural

        err_console.print(f"{plural(len(rows), 'answer')}: {output}", markup=False, soft_wrap=True)
