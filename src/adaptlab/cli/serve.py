"""``adaptlab serve``: the candidates of a project behind an OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from adaptlab.cli.common import err_console, project_option
from adaptlab.cli.precision import precision_option
from adaptlab.cli.store_target import store_option

if TYPE_CHECKING:
    from adaptlab.engine.artifact import ServedModel

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@project_option
@click.option(
    "-c",
    "--candidate",
    "candidates",
    multiple=True,
    help="Candidate to serve ('best': the winner); repeatable.",
)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="NAME=DIR",
    help="Serve an exported model folder under NAME; repeatable.",
)
@click.option(
    "--route",
    "routes",
    multiple=True,
    metavar="[NAME:]A=W,B=W",
    help="Split traffic: 'a=0.9,b=0.1' (route 'default') or 'canary:a=0.5,b=0.5'; "
    "sticky per user (body 'user' or X-User-Id header).",
)
@click.option(
    "--shadow",
    multiple=True,
    help="Also answer every request with this candidate; logged, never returned.",
)
@click.option(
    "--remote",
    "remotes",
    multiple=True,
    metavar="NAME=URL[@MODEL]",
    help="An OpenAI-compatible server (vLLM, llama.cpp, Ollama) answers for NAME: a served "
    "generative candidate keeps its prompt and parsing, any other NAME is passed through.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--no-auth", is_flag=True, help="Serve without API keys (anyone who reaches the port may call)."
)
@click.option(
    "--max-batch",
    default=32,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Most inputs per forward pass; 1 serves one request at a time.",
)
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, 10_000),
    help="How long the first request of a batch waits for others.",
)
@click.option(
    "--max-body-kb",
    default=1024,
    show_default=True,
    type=click.IntRange(1, 1 << 20),
    help="Larger request bodies get 413.",
)
@click.option(
    "--max-input-chars",
    default=20_000,
    show_default=True,
    type=click.IntRange(1, 10**8),
    help="Longer inputs get 413.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Allow browser calls from this origin (CORS is off by default); repeatable.",
)
@click.option(
    "--log-bodies", is_flag=True, help="Put inputs in the server's log lines (never keys)."
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Also print uvicorn's access log line for every request (client, method, path, "
    "status; query values redacted). Off by default: each answer already gets one log line "
    "with its request id, candidate and time.",
)
@click.option(
    "--header-timeout-s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="A connection whose request line and headers are not all in by then gets 408 and "
    "is closed (slow or stalled clients cannot hold connections).",
)
@click.option(
    "--body-timeout-s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Time for the request body to arrive after its headers; then 408 and closed.",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Open connections answered at once; past it a new one gets 503. Lowered to fit "
    "the open-file limit, which serve raises to its hard limit where allowed.",
)
@click.option(
    "--store-timeout-s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 600),
    help="How long a request waits for its log row while another process locks the run "
    "store, and for a PostgreSQL store to accept a connection; then 503 (a request is "
    "only answered once it is logged).",
)
@precision_option
@store_option
def serve(
    project_dir: str,
    candidates: tuple[str, ...],
    models: tuple[str, ...],
    routes: tuple[str, ...],
    shadow: tuple[str, ...],
    remotes: tuple[str, ...],
    host: str,
    port: int,
    no_auth: bool,
    max_batch: int,
    max_wait_ms: float,
    max_body_kb: int,
    max_input_chars: int,
    cors_origins: tuple[str, ...],
    log_bodies: bool,
    access_log: bool,
    header_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
    store_timeout_s: float,
    precision: str,
    store: str | None,
) -> None:
    """Serve candidates: OpenAI-compatible POST /v1/chat/completions (streaming too) and
    GET /v1/models, POST /v1/predict (label or JSON with its score), POST /v1/feedback
    (the right label for a request id), GET /health, GET /metrics (Prometheus).

    Clients send the raw input; the candidate applies its own template, shots and
    adapter. Each request and answer is logged in the project's store ('adaptlab logs').
    Requests need a key from 'adaptlab keys add' unless --no-auth.

    \b
    adaptlab keys add my-app -p my-task
    adaptlab serve -p my-task --candidate best
    adaptlab serve -p my-task --route finetune=0.9,few-shot-8=0.1 --shadow rag-knn

    Replicas behind a load balancer share one PostgreSQL store (request log, feedback,
    keys, rate limits): start each with the same --store postgresql://USER@HOST/DB (or
    ADAPTLAB_STORE_URL). A revoked key is refused by every replica within 1 s; a key's
    --rpm holds across them.
    """
    import logging
    import os

    # torch's OpenMP threads spin after each parallel region by default; in a server
    # they share the cores with the event loop (and often the clients), and measured
    # on 2 busy cores the spinning made a one-text forward pass 25x slower (0.9 vs 20
    # texts/s, bench/serve_load.py's model alone). Set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import uvicorn

    from adaptlab.cli.common import require_runs
    from adaptlab.cli.progress import RichProgress
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine.artifact import load_model, open_candidate
    from adaptlab.engine.project import Project
    from adaptlab.serve.app import ServeConfig, create_app
    from adaptlab.serve.keys import list_keys
    from adaptlab.serve.remote import attach_remote, parse_remote, remote_model
    from adaptlab.serve.routing import DEFAULT_ROUTE, Route, parse_route
    from adaptlab.store import RunStore
    from adaptlab.store.db import display, is_url

    project = Project.load(project_dir)
    target = store if store is not None else project.store
    parsed = [parse_route(r) for r in routes]
    folders: dict[str, Path] = {}
    for spec in models:
        name, eq, folder = spec.partition("=")
        if not eq or not name or not folder:
            raise click.BadParameter(f"'{spec}': write NAME=DIR", param_hint="--model")
        _check_name(name, "--model")
        folders[name] = Path(folder)
    for name in candidates:
        _check_name(name, "--candidate")
    for name in shadow:
        _check_name(name, "--shadow")
    remote = {name: (url, model) for name, url, model in map(parse_remote, remotes)}
    wanted: list[str] = []
    named = [*candidates, *folders, *remote, *(c for r in parsed for c in r.candidates), *shadow]
    for name in named:
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise click.UsageError("name what to serve: --candidate NAME, --model NAME=DIR or --route")
    in_project = {c.name for c in project.config.candidates} | {"best"}
    if any(n not in folders and (n not in remote or n in in_project) for n in wanted):
        require_runs(project)  # a candidate's result is read: before a store is created
    auth = not no_auth
    project.prepare_state()
    # the store before the models: one that cannot be used stops here, before they load
    with RunStore(target) as opened:
        active = [k for k in list_keys(opened.conn) if not k.revoked_at] if auth else []
    loaded: dict[str, ServedModel] = {}
    aliases: dict[str, str] = {}
    with RichProgress(err_console) as progress:
        for name in wanted:
            if name in folders:
                model = load_model(folders[name], name=name, progress=progress, precision=precision)
            elif name in remote and name not in in_project:
                model = remote_model(name, *remote[name])
            else:
                require_runs(project)
                if name == "best":
                    from adaptlab.cli.rejudge import best_note

                    note = best_note(project)
                    if note is not None:
                        err_console.print(note, markup=False, soft_wrap=True)
                model = open_candidate(project, name, progress=progress, precision=precision)
            if name in remote and model.manifest.strategy != "remote":
                attach_remote(model, *remote[name])
            loaded[model.name] = model
            aliases[name] = model.name  # 'best' is served under the winner's name
    _print_precision(loaded, precision)
    table = {r.name: Route(r.name, tuple((aliases[c], w) for c, w in r.weights)) for r in parsed}
    if DEFAULT_ROUTE not in table:
        first = aliases[wanted[0]]
        table[DEFAULT_ROUTE] = Route(DEFAULT_ROUTE, ((first, 1.0),))
    shadows = [aliases[s] for s in shadow]
    if auth:
        if not active:
            where = f" --store {display(target)}" if is_url(target) else ""
            raise AdaptlabError(
                f"no API keys in the run store {display(target)}: every request would be refused",
                fix=f"create one with 'adaptlab keys add NAME -p {project.root}{where}', or "
                "serve without keys with --no-auth (only where no one else can reach the port)",
                code="no-keys",
            )
    elif host not in LOOPBACK:
        err_console.print(
            f"warning: --no-auth on {host}: anyone who reaches this port can use the models",
            markup=False,
        )
    config = ServeConfig(
        models=loaded,
        routes=table,
        store_path=project.store_path if is_url(target) else Path(target),
        store_url=str(target) if is_url(target) else None,
        shadow=shadows,
        auth=auth,
        max_body_bytes=max_body_kb * 1024,
        max_input_chars=max_input_chars,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        cors_origins=list(cors_origins),
        log_bodies=log_bodies,
        store_timeout_s=store_timeout_s,
    )
    app = create_app(config)
    for name, route in table.items():
        split = ", ".join(f"{c} {100 * w:.0f}%" for c, w in route.weights)
        err_console.print(f"route {name}: {split}", markup=False)
    for r in parsed:
        if r.given_total is not None and abs(r.given_total - 1) > 1e-9:
            err_console.print(
                f"note: the weights of route {r.name} add up to {r.given_total:g}, not 1; "
                "they were scaled to the shares above",
                markup=False,
            )
    if shadows:
        err_console.print(f"shadow (logged, never returned): {', '.join(shadows)}", markup=False)
    err_console.print(f"request log and keys: {display(target)}", markup=False, soft_wrap=True)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    serve_log = logging.getLogger("adaptlab.serve")
    serve_log.addHandler(handler)
    serve_log.setLevel(logging.INFO)
    from adaptlab.serve.protocol import FD_RESERVE, guarded_protocol, raise_open_files_limit
    from adaptlab.serve.redact import uvicorn_log_config

    open_files = raise_open_files_limit()
    if open_files is not None and max_connections > open_files - FD_RESERVE:
        fitted = max(1, open_files - FD_RESERVE)
        err_console.print(
            f"note: --max-connections {max_connections} lowered to {fitted}: this process may "
            f"open {open_files} files (ulimit -n; raise the hard limit to allow more)",
            markup=False,
        )
        max_connections = fitted
    err_console.print(
        f"limits: request head {header_timeout_s:g} s, body {body_timeout_s:g} s and "
        f"{max_body_kb} KiB, {max_connections} connections, store wait {store_timeout_s:g} s",
        markup=False,
        soft_wrap=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        server_header=False,
        log_config=uvicorn_log_config(),  # no query-string value (an API key) in the log
        http=guarded_protocol(
            header_timeout_s=header_timeout_s,
            body_timeout_s=body_timeout_s,
            max_connections=max_connections,
        ),
        backlog=min(2048, max_connections),
    )


def _print_precision(loaded: dict[str, ServedModel], asked: str) -> None:
    """One line per encoder candidate: the arithmetic its batches run in, as loaded."""
    from adaptlab.backends.sentence_transformers import SMALL_BATCH, bf16_supported

    for model in loaded.values():
        # A remote model (served behind a route) has no strategy context, nor an encoder.
        ctx = getattr(model.strategy, "ctx", None)
        backend = getattr(ctx, "backend", None)
        if backend is None:
            continue
        described = backend.describe()
        used = described.get("precision", "fp32")
        note = ""
        if used == "bf16":
            note = f"; batches of up to {SMALL_BATCH} inputs run fp32"
            if not bf16_supported(str(described.get("device", "cpu"))):
                note += "; no native bf16 here: emulated, slower than fp32"
        err_console.print(
            f"{model.name}: encoder precision {used} (--precision {asked}{note})", markup=False
        )


def _check_name(name: str, option: str) -> None:
    """A served name travels in JSON, headers and the store: it must be printable text."""
    from adaptlab.serve.checks import text_problem

    problem = text_problem(name)
    if problem is None and not name.isprintable():
        problem = "holds a control character"
    if problem is not None:
        raise click.BadParameter(
            f"the name {name!a} {problem}; use letters, digits, '-' and '_'",
            param_hint=option,
        )
