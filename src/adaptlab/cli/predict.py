"""``adaptlab predict``: answers of a candidate (or an exported model) as JSON Lines.

The inputs are streamed: read in 64 KB chunks, decoded incrementally and answered
batch by batch, so a 1 GB file or an endless pipe (``yes | adaptlab predict …``)
never sits in memory whole; a line longer than ``MAX_LINE_CHARS`` is refused as soon
as it passes the bound. ``-o`` is written whole or not at all
(:func:`adaptlab.core.files.open_for_writing`): a failure leaves the old file as it was.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from adaptlab.cli.common import err_console, project_option
from adaptlab.cli.precision import precision_option

if TYPE_CHECKING:
    from adaptlab.core.files import Output
    from adaptlab.engine.artifact import ServedModel
    from adaptlab.serve.answers import InputRow

_CHUNK = 1 << 16


def read_lines(stream: IO[bytes], name: str, encoding: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of ``stream``, decoded chunk by chunk; at most one line
    (of at most ``MAX_LINE_CHARS`` characters) and one chunk are held at a time.

    Raises :class:`DataError` naming the line for bytes not in ``encoding`` and for a
    line over the bound (read no further than the bound).
    """
    import codecs

    from adaptlab.core.errors import DataError
    from adaptlab.serve.answers import MAX_LINE_CHARS, line_too_long

    decoder = codecs.getincrementaldecoder(encoding)()
    read = getattr(stream, "read1", stream.read)  # what a pipe has now, not a full chunk
    number, pending = 0, ""
    while True:
        chunk = read(_CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            data = bytes(exc.object)
            raise DataError(
                f"not {encoding} text (byte {data[exc.start]:#x})",
                file=name,
                line=number + pending.count("\n") + data.count(b"\n", 0, exc.start) + 1,
                fix="convert it to UTF-8 (iconv -f latin1 -t utf-8 FILE), or name its "
                "encoding with --encoding (latin-1, utf-16, cp1252, …)",
            ) from None
        pending += text
        if "\n" in text:
            *complete, pending = pending.split("\n")
            for line in complete:
                number += 1
                if len(line) + 1 > MAX_LINE_CHARS:
                    raise line_too_long(name, number)
                yield number, line + "\n"
        if len(pending) > MAX_LINE_CHARS:  # no newline yet: refused before it grows further
            raise line_too_long(name, number + 1)
        if not chunk:
            if pending:
                yield number + 1, pending
            return


def stream_inputs(
    stream: IO[bytes], name: str, input_field: str, encoding: str
) -> Iterator[InputRow]:
    """What :func:`adaptlab.serve.answers.read_inputs` reads (JSON Lines when the first
    non-empty line starts with ``{``, else one input per line), streamed."""
    from adaptlab.serve.answers import input_rows  # the server's own row checks

    yield from input_rows(read_lines(stream, name, encoding), name, input_field)


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
@precision_option
@click.argument("inputs", default="-", type=click.Path(dir_okay=False, allow_dash=True))
def predict(
    project_dir: str,
    candidate: str | None,
    model_dir: Path | None,
    output: str | None,
    batch_size: int,
    encoding: str,
    precision: str,
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
            model = load_model(model_dir, progress=progress, precision=precision)
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
            model = open_candidate(project, candidate, progress=progress, precision=precision)
    from contextlib import ExitStack

    from adaptlab.core.files import open_for_writing, printable_name

    name = "<stdin>" if inputs == "-" else printable_name(inputs)
    with ExitStack() as stack:
        if inputs == "-":
            source: IO[bytes] = sys.stdin.buffer
        else:
            source = stack.enter_context(_open_inputs(Path(inputs), output))
        rows = stream_inputs(source, name, model.manifest.input_field, encoding)
        out = (
            stack.enter_context(open_for_writing(output, what="the answers"))
            if output is not None
            else sys.stdout
        )
        with RichProgress(err_console) as progress, progress.task("predicting", None) as advance:
            answered = _answer(model, rows, batch_size, out, advance)
    if output is not None:
        from adaptlab.core.format import plural

        err_console.print(
            f"{plural(answered, 'answer')}: {printable_name(output)}", markup=False, soft_wrap=True
        )


def _answer(
    model: ServedModel,
    rows: Iterator[InputRow],
    batch_size: int,
    out: Output | IO[str],
    advance: Callable[[int], None],
) -> int:
    """Answer ``rows`` ``batch_size`` at a time, writing each batch's JSON lines to
    ``out`` as soon as it is answered; returns how many were answered."""
    from adaptlab.serve.answers import answer_json

    answered = 0
    batch: list[InputRow] = []
    done = False
    while not done:
        row = next(rows, None)
        if row is not None:
            batch.append(row)
        done = row is None
        if batch and (done or len(batch) == batch_size):
            preds = model.predict([r.text for r in batch])
            for r, pred in zip(batch, preds, strict=True):
                obj = {"id": r.id if r.id is not None else str(r.line), "input": r.text}
                obj.update(answer_json(pred, model.task, model.name))
                out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            out.flush()
            advance(len(batch))
            answered += len(batch)
            batch = []
    return answered


def _open_inputs(path: Path, output: str | None) -> IO[bytes]:
    """The inputs file opened for streaming; a clear error when it cannot be read, or
    when ``-o`` names the same file (its inputs would be replaced by their answers)."""
    import os

    from adaptlab.core.errors import AdaptlabError
    from adaptlab.store.files import os_error

    if output is not None and os.path.exists(output):
        try:
            same = os.path.samefile(path, output)
        except OSError:
            same = False
        if same:
            raise AdaptlabError(
                "-o names the inputs file: its inputs would be replaced by the answers",
                file=path,
                fix="write the answers to another file (-o answers.jsonl)",
                code="output-is-input",
            )
    try:
        return open(path, "rb")  # closed by the caller's ExitStack
    except OSError as exc:
        raise os_error(exc, "the inputs file") from exc
