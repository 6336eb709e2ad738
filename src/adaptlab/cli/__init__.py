"""The ``adaptlab`` command line; one module per command group.

Modules here import only click and rich at the top: ``adaptlab --help`` must not
pay for torch. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import sys

import click

from adaptlab.cli.clean import clean
from adaptlab.cli.common import handle_errors
from adaptlab.cli.curve import curve
from adaptlab.cli.data import data
from adaptlab.cli.decide import decide
from adaptlab.cli.export import export
from adaptlab.cli.info import schema, strategies
from adaptlab.cli.jobs import jobs
from adaptlab.cli.keys import keys
from adaptlab.cli.logs import logs
from adaptlab.cli.predict import predict
from adaptlab.cli.project import demo, init
from adaptlab.cli.prompt import prompt
from adaptlab.cli.rag import rag
from adaptlab.cli.report import report
from adaptlab.cli.run import run
from adaptlab.cli.runs import runs
from adaptlab.cli.serve import serve
from adaptlab.cli.store import store
from adaptlab.core.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adaptlab")
def cli() -> None:
    """Prompt, RAG or fine-tune? Measure all of them on your task and decide with numbers.

    \b
    adaptlab init my-task --example support-tickets
    adaptlab data check -p my-task
    adaptlab run -p my-task
    adaptlab report -p my-task --open
    adaptlab decide -p my-task
    """


for command in (
    init,
    demo,
    data,
    run,
    rag,
    prompt,
    report,
    export,
    predict,
    serve,
    keys,
    logs,
    runs,
    decide,
    curve,
    clean,
    store,
    jobs,
    strategies,
    schema,
):
    cli.add_command(command)


def main() -> None:
    with handle_errors():
        cli.main(standalone_mode=False)
    sys.exit(0)


__all__ = [
    "export",
    "handle_errors",
    "main",
]
