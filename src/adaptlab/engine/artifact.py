"""``adaptlab export --candidate``: a candidate as a self-contained model folder.

The folder holds everything :meth:`Strategy.predict` needs without the project's run
store: ``adaptlab-model.json`` (the manifest: strategy and options, task, labels,
the encoder or base-model reference, the LLM settings without any key, the prompt
template's version, the shots, the measured figures, a SHA-256 of every file),
the strategy's state files (:mod:`adaptlab.strategies.state`: arrays, skops,
safetensors; never a pickle), ``prompt/`` (the template and every template it pulls
in), ``encoder/`` (a fine-tuned encoder), ``adapter/`` (a LoRA adapter) and
``MODEL_CARD.md``.

An exported folder is data from possibly someone else: :func:`load_model` checks the
manifest against its schema and every file against its hash before reading it,
follows no links, renders the template in the sandbox, and loads models as tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from adaptlab.backends import BACKENDS, EncoderBackend, key_refusal, load_backend, load_llm
from adaptlab.backends.gguf import resolve_model
from adaptlab.backends.runner import LLMRunner
from adaptlab.config import LLMConfig, ModelConfig
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.files import read_regular_file
from adaptlab.core.format import pct, sig
from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import Prediction
from adaptlab.core.version import __version__
from adaptlab.engine.manifest import FORMAT, FORMAT_VERSION, MANIFEST, ExportError, Manifest
from adaptlab.engine.project import Project
from adaptlab.engine.runner import Models, make_context, result_key
from adaptlab.engine.summary import ProjectSummary, summarize_project
from adaptlab.engine.vllm import write_vllm
from adaptlab.evaluation.summary import CandidateSummary
from adaptlab.rag.project import ProjectRetrieval
from adaptlab.store import RunStore
from adaptlab.strategies import STRATEGIES, StrategyContext, get_strategy
from adaptlab.strategies.prompting.config import PromptOptions
from adaptlab.strategies.prompting.strategy import PromptStrategy

#: Most texts in one forward pass of a loaded encoder (predict, serve). ``encode`` sorts
#: a call's texts by length before cutting them into passes, so a server's batch of 32
#: requests (in arrival order) runs as two passes of similar lengths instead of one
#: padded to its longest: on the support tickets 28% fewer tokens, and 10-16% (fp32) and
#: 11-23% (bf16) less CPU time a text than one pass of 32, over four runs of
#: ``bench/serve_load.py`` on 2 cores (passes of 8 cut more tokens, but bf16 ran slower).
LOADED_ENCODER_BATCH = 16

#: A manifest holds settings, label names, hashes and a few-shot pool (its rows): even a
#: pool of 100,000 long examples stays under this.
MANIFEST_MAX_BYTES = 256 << 20

if TYPE_CHECKING:
    from adaptlab.strategies import Strategy

_REEXPORT = "export it again: adaptlab export -p PROJECT --candidate NAME DIR"


@dataclass
class ExportOutcome:
    folder: Path
    candidate: str
    files: int
    bytes: int
    #: Test inputs answered by the exported model with the run's label, of those checked
    #: (None: not checked, a generative candidate's answers cost calls).
    reproduced: tuple[int, int] | None


# ---------------------------------------------------------------- export


def export_candidate(
    project: Project,
    name: str,
    out: Path,
    *,
    run_id: str | None = None,
    progress: ProgressSink | None = None,
    vllm: bool = False,
) -> ExportOutcome:
    """Write candidate ``name`` of a project's run (``best``: the run's winner) to ``out``.

    ``out`` must not exist or be an empty folder; the export is written next to it and
    renamed into place, so a failed export leaves nothing behind. Raises
    :class:`ExportError` for an unknown candidate, a result that no longer matches
    ``adaptlab.yaml`` or the data, or a strategy that cannot be exported. ``vllm`` adds
    what ``vllm serve`` needs (:mod:`adaptlab.engine.vllm`; LoRA candidates only).
    """

    progress = progress or ProgressSink()
    summary = summarize_project(project, run_id, learning=False)
    chosen = summary.verdict.winner if name == "best" else name
    known = [c.name for c in summary.candidates]
    if chosen not in known:
        raise ExportError(
            f"run {summary.run_id} has no candidate named '{name}'",
            fix="choose one of: best, " + ", ".join(known),
            code="unknown-candidate",
        )
    cs = summary.candidate(chosen)
    cand = next((c for c in project.config.candidates if c.name == chosen), None)
    split = project.split()
    if cand is None or result_key(project, cand, split) != cs.key:
        raise ExportError(
            f"candidate '{chosen}' in adaptlab.yaml (or the data) changed since run "
            f"{summary.run_id}: the export would not be the model that was measured",
            file=project.root / "adaptlab.yaml",
            fix=f"run it again (adaptlab run -p {project.root} -c {chosen}), then export",
            code="stale-result",
        )
    _check_target(out)
    with RunStore(project.store) as store:
        stored = store.result(cs.key)
        test_rows = store.predictions(cs.key)
    models = Models(project)
    try:
        strategy, _ = make_context(project, cand, project.checkpoint_dir(cs.key), models, progress)
        cls = type(strategy)
        progress.info(f"restoring {chosen} from run {summary.run_id}")
        strategy.restore_fit(split.train, split.val, stored.info)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            manifest = _write(project, cand.name, strategy, tmp, summary, cs, split.fingerprint)
            if vllm:
                write_vllm(tmp, manifest, out)
            _write_manifest(tmp, manifest)
            reproduced = None
            if not cls.generative and test_rows:
                # Through the folder as written and loaded, as predict and serve use it.
                served = load_model(tmp, progress=progress)
                reproduced = _reproduce(served.strategy, test_rows, progress)
                manifest.figures["reproduced_test_answers"] = list(reproduced)
            _write_card(tmp, manifest, out.name)
            _write_manifest(tmp, manifest)
            if out.exists():
                out.rmdir()  # checked empty above
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        models.close()
    files = [p for p in out.rglob("*") if p.is_file()]
    return ExportOutcome(out, chosen, len(files), sum(p.stat().st_size for p in files), reproduced)


def _check_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(
            "the export folder is a file or a link", file=out, fix="name a new folder"
        )
    if out.exists() and any(out.iterdir()):
        raise ExportError(
            "the export folder is not empty; nothing was written",
            file=out,
            fix="name a new or empty folder (an export never overwrites files)",
            code="not-empty",
        )
    if not out.parent.is_dir():
        raise ExportError(
            "the export folder's parent does not exist", file=out.parent, fix="create it first"
        )


def _write(
    project: Project,
    name: str,
    strategy: Strategy,
    folder: Path,
    summary: Any,
    cs: Any,
    fingerprint: str,
) -> Manifest:
    cls = type(strategy)
    try:
        state = strategy.save_state(folder)
    except NotImplementedError as exc:
        raise ExportError(str(exc), fix="export another candidate", code="not-exportable") from None
    cfg = project.config
    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        adaptlab_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        candidate=name,
        strategy=cls.name,
        options=strategy.options.model_dump(mode="json"),
        generative=cls.generative,
        task=cfg.task,
        labels=dict(cfg.labels),
        seed=cfg.seed,
        input_field=cfg.data.input_field,
        label_field=cfg.data.label_field,
        state=state,
        task_options={"schema": cfg.schema_, "instruction": cfg.instruction},
        source={
            "project": cfg.name,
            "run_id": summary.run_id,
            "result_key": cs.key,
            "data_fingerprint": fingerprint,
        },
        figures=_figures(summary, cs),
    )
    if strategy.ctx.backend is not None:
        manifest.encoder = cfg.model.model_dump(mode="json")
        if state.get("encoder_folder"):
            manifest.encoder_folder = str(state["encoder_folder"])
    if cls.generative:
        _write_generative(strategy, folder, manifest)
        if getattr(strategy.options, "context_k", 0):
            manifest.rag_project = str(project.root.resolve())
    return manifest


def _write_generative(strategy: Any, folder: Path, manifest: Manifest) -> None:
    """The prompt template's files, and the served model's settings and folders."""
    template = strategy.template
    prompt = folder / "prompt"
    for rel, source in template.sources().items():
        target = prompt / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    manifest.template = {
        "name": template.name,
        "version": template.version,
        "file": f"prompt/{template.file.name}",
    }
    config = strategy.serving_llm().config
    unset = {k for k in ("prices", "answers") if getattr(config, k) is None}
    llm = config.model_dump(mode="json", exclude=unset)
    if config.adapter:
        _copy_model_folder(Path(config.adapter), folder / "adapter")
        manifest.llm_folders["adapter"] = "adapter"
    local = Path(config.name)
    trained = type(strategy).trains_weights and not config.adapter
    if trained and config.backend == "hf" and (local / "config.json").is_file():
        # A full fine-tune's own folder; a base model stays a reference (name).
        _copy_model_folder(local, folder / "model")
        manifest.llm_folders["name"] = "model"
    manifest.llm = llm


def _copy_model_folder(src: Path, dst: Path) -> None:
    """Copy the files a model folder is loaded from; links and pickles are not copied."""
    dst.mkdir(parents=True)
    for path in sorted(src.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle"):
            continue  # optimiser and trainer state; weights travel as safetensors
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _figures(summary: ProjectSummary, cs: CandidateSummary) -> dict[str, Any]:
    """The candidate's measured figures, for the model card (raw values)."""
    out: dict[str, Any] = {
        "metric": cs.metric,
        "test": {
            "value": cs.quality,
            "low": cs.quality_ci.low,
            "high": cs.quality_ci.high,
            "n": cs.n,
        },
        "latency_p50_ms": cs.latency_p50_ms,
        "latency_p95_ms": cs.latency_p95_ms,
        "cost_per_1k_usd": cs.cost_per_1k_usd,
        "winner": summary.verdict.winner,
        "confidence": summary.confidence,
        "split": dict(summary.split),
    }
    if cs.val_quality_ci is not None:
        ci = cs.val_quality_ci
        out["val"] = {"value": ci.estimate, "low": ci.low, "high": ci.high, "n": cs.val_n}
    return out


def _reproduce(strategy: Strategy, rows: Sequence[Any], progress: ProgressSink) -> tuple[int, int]:
    """How many of the run's test answers the restored model gives again."""
    texts = [r.input for r in rows]
    preds: list[Prediction] = []
    with progress.task("checking the export against the run's answers", len(texts)) as advance:
        for start in range(0, len(texts), 64):
            preds.extend(strategy.predict(texts[start : start + 64]))
            advance(min(64, len(texts) - start))
    same = sum(p.label == r.predicted for p, r in zip(preds, rows, strict=True))
    return same, len(rows)


def _write_card(folder: Path, m: Manifest, name: str) -> None:
    f = m.figures
    lines = [
        f"# {m.candidate}",
        "",
        f"Exported by adaptlab {m.adaptlab_version} on {m.created_at} from project "
        f"'{m.source.get('project')}', run {m.source.get('run_id')}.",
        "",
        "## What it is",
        f"- strategy: `{m.strategy}` ({'generative' if m.generative else 'encoder'}); "
        f"task: {m.task}",
        f"- labels: {', '.join(m.labels) or '(none)'}",
    ]
    if m.encoder:
        where = f"`{m.encoder_folder}/` (fine-tuned)" if m.encoder_folder else "reference"
        lines.append(f"- encoder: {m.encoder.get('name')} — {where}")
    if m.llm:
        lines.append(f"- model: {m.llm.get('backend')}:{m.llm.get('name')}")
        if "adapter" in m.llm_folders:
            lines.append("- LoRA adapter: `adapter/`")
    if m.template:
        lines.append(f"- prompt template: {m.template['name']} (version {m.template['version']})")
    shots = m.state.get("fixed") or m.state.get("shots") or []
    if shots:
        lines.append(f"- few-shot examples: {len(shots)} (in {MANIFEST})")
    metric = f.get("metric", "accuracy")
    lines += ["", "## Measured (on the run's holdout)"]
    for split in ("val", "test"):
        if split in f:
            s = f[split]
            lines.append(
                f"- {split}: {metric} {pct(s['value'])} ({round(100 * f['confidence'])}% "
                f"interval {pct(s['low'])}–{pct(s['high'])}, n = {s['n']})"
            )
    lines.append(
        f"- latency p50 {sig(f['latency_p50_ms'])} ms, p95 {sig(f['latency_p95_ms'])} ms "
        "(one request at a time, on the machine of the run)"
    )
    lines.append(f"- cost per 1,000 requests: {sig(f['cost_per_1k_usd'])} USD")
    if "reproduced_test_answers" in f:
        same, n = f["reproduced_test_answers"]
        lines.append(f"- this export gives the run's answer for {same} of {n} test inputs")
    lines.append(f"- winner of its run: {f.get('winner')}")
    lines += [
        "",
        "## Use",
        "```",
        "# DIR: this folder (exported as " + name + ")",
        "adaptlab predict --model DIR inputs.txt",
        f"adaptlab serve -p PROJECT --model {m.candidate}=DIR   # PROJECT keeps keys and the log",
        "```",
        "",
        "## Limits",
        "- Measured on the run's data only; traffic unlike it may score lower.",
        "- No API key is stored; a hosted model reads its key from the environment.",
    ]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    manifest.files = _hashes(folder)
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            out[path.relative_to(folder).as_posix()] = _sha256(path)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_candidate(
    project: Project,
    name: str,
    *,
    progress: ProgressSink | None = None,
    precision: str = "fp32",
) -> ServedModel:
    """Candidate ``name`` (or ``best``) of the project's latest run, loaded as an export.

    The export is made once per stored result under ``.adaptlab/exports/`` and reused,
    so ``adaptlab predict``, ``adaptlab serve`` and ``adaptlab export`` answer through
    the same files.
    """

    summary = summarize_project(project, learning=False)
    chosen = summary.verdict.winner if name == "best" else name
    if chosen not in [c.name for c in summary.candidates]:
        raise ExportError(
            f"run {summary.run_id} has no candidate named '{name}'",
            fix="choose one of: best, " + ", ".join(c.name for c in summary.candidates),
            code="unknown-candidate",
        )
    folder = project.state_dir / "exports" / summary.candidate(chosen).key
    if not (folder / MANIFEST).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # a half-written or damaged cache entry
            shutil.rmtree(folder)
        export_candidate(project, chosen, folder, run_id=summary.run_id, progress=progress)
    return load_model(folder, name=chosen, progress=progress, precision=precision)


# ---------------------------------------------------------------- load


@dataclass
class ServedModel:
    """An exported candidate, loaded: ``predict(texts)`` answers as the run did."""

    name: str
    folder: Path
    manifest: Manifest
    strategy: Strategy

    @property
    def generative(self) -> bool:
        return self.manifest.generative

    @property
    def task(self) -> str:
        return self.manifest.task

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One :class:`Prediction` per text, in order."""
        if not texts:
            return []
        return self.strategy.predict(list(texts))


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an exported folder, checked; raises :class:`ExportError`."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError(
            "is not a folder", file=folder, fix=f"name a folder written by {_REEXPORT}"
        )
    if path.is_symlink() or not path.is_file():
        raise ExportError(
            f"has no {MANIFEST}: it is not an exported adaptlab model",
            file=folder,
            fix=_REEXPORT,
            code="not-a-model",
        )
    try:
        # bounded: a manifest is a page of settings and hashes, whoever made the folder
        raw = read_regular_file(
            path,
            max_bytes=MANIFEST_MAX_BYTES,
            limit_name="for a model manifest",
            what="model manifest",
        )
        data = json.loads(raw.decode("utf-8"))
        manifest = Manifest.model_validate(data)
    except AdaptlabError as exc:
        raise _manifest_error(folder, exc.issue.message) from None
    except (ValueError, UnicodeDecodeError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = f" (field {'.'.join(map(str, first['loc']))}: {first['msg']})" if first else ""
        raise _manifest_error(folder, f"is not a valid manifest{where}") from None
    if manifest.format != FORMAT or manifest.format_version > FORMAT_VERSION:
        raise _manifest_error(
            folder,
            f"is format {manifest.format!r} version {manifest.format_version}; this adaptlab "
            f"reads {FORMAT!r} up to version {FORMAT_VERSION}",
            fix="upgrade adaptlab (pip install -U adaptlab)",
        )
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is a plain file inside ``folder`` with its hash."""
    for rel, digest in manifest.files.items():
        path = folder / rel
        inside = os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)
        if ".." in Path(rel).parts or not inside or not _plain(path):
            raise ExportError(
                "is missing, a link, or outside the model folder",
                file=path,
                fix=_REEXPORT,
                code="bad-model-file",
            )
        if _sha256(path) != digest:
            raise ExportError(
                "was changed after export (its SHA-256 differs from the manifest's)",
                file=path,
                fix=_REEXPORT,
                code="bad-model-file",
            )


def _plain(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def load_model(
    folder: str | Path,
    *,
    name: str | None = None,
    progress: ProgressSink | None = None,
    precision: str = "fp32",
) -> ServedModel:
    """Load an exported candidate from ``folder``; ``name`` defaults to the candidate's.

    ``precision`` applies to the encoder: fp32 (default) makes an answer independent of
    which other inputs share its batch (bf16 rounds differently per batch size), which a
    server that batches concurrent requests needs. Raises :class:`ExportError` for a
    folder that is not a valid export.
    """

    folder = Path(folder).resolve()
    progress = progress or ProgressSink()
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    backend = None
    if manifest.encoder is not None:
        backend = _load_encoder(folder, manifest, precision)
    ctx = StrategyContext(
        backend=backend,
        labels=dict(manifest.labels),
        seed=manifest.seed,
        workdir=Path(tempfile.gettempdir()),
        progress=progress,
        _cache=_Recent(),
        task=manifest.task,
        root=folder,
        task_options=dict(manifest.task_options),
    )
    if manifest.generative:
        strategy = _load_generative(folder, manifest, ctx)
    else:
        if manifest.strategy not in STRATEGIES.names():
            raise _manifest_error(
                folder,
                f"names strategy '{manifest.strategy}', which this adaptlab does not have "
                f"(it has {', '.join(STRATEGIES.names())})",
                fix="install the plugin that provides it, or " + _REEXPORT,
            )
        cls = get_strategy(manifest.strategy)
        try:
            options = cls.Options.model_validate(manifest.options)
        except ValidationError as exc:
            raise _bad_manifest(
                folder, f"options '{manifest.strategy}' does not accept", exc
            ) from None
        strategy = cls(options, ctx)
        _load_state(strategy, folder, manifest)
    return ServedModel(name or manifest.candidate, folder, manifest, strategy)


def _load_state(strategy: Strategy, folder: Path, manifest: Manifest) -> None:
    """``strategy.load_state``, a missing or mistyped state entry named, not a traceback."""
    try:
        strategy.load_state(folder, manifest.state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        detail = f"no '{exc.args[0]}'" if isinstance(exc, KeyError) else type(exc).__name__
        raise _manifest_error(
            folder,
            f"has an incomplete or malformed 'state' ({detail})",
        ) from None


def _load_encoder(folder: Path, manifest: Manifest, precision: str) -> Any:
    data = dict(manifest.encoder or {})
    if manifest.encoder_folder:
        data["name"] = str(_inside(folder, manifest.encoder_folder))
    data["precision"] = precision
    data["batch_size"] = min(int(data.get("batch_size", 64)), LOADED_ENCODER_BATCH)
    try:
        config = ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise _bad_manifest(folder, "an invalid encoder entry", exc) from None
    try:
        cls = BACKENDS.get(config.backend)
    except KeyError as exc:
        raise _manifest_error(folder, f"names {exc.args[0]} as its encoder") from None
    if not issubclass(cls, EncoderBackend):
        raise _manifest_error(
            folder,
            f"names '{config.backend}' (a generative model) as its encoder (encoder.backend)",
        )
    return load_backend(config)


def _manifest_error(folder: Path, message: str, fix: str = _REEXPORT) -> ExportError:
    """An error about ``folder``'s manifest: its file, the fix, one code."""
    return ExportError(message, file=folder / MANIFEST, fix=fix, code="bad-manifest")


def _bad_manifest(folder: Path, what: str, exc: ValidationError) -> ExportError:
    return _manifest_error(folder, f"has {what} ({exc.errors()[0]['msg']})")


def _inside(folder: Path, rel: str) -> Path:
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder) or not path.is_dir():
        raise _manifest_error(
            folder,
            f"names folder '{rel}', which is not a folder inside the export",
        )
    return path


def _load_generative(folder: Path, manifest: Manifest, ctx: Any) -> Strategy:
    if manifest.template is None or manifest.llm is None:
        raise _manifest_error(
            folder,
            "a generative export needs 'template' and 'llm'",
        )
    # Served through the plain prompting strategy: the answers are the template, the
    # shots and the tuned model; how the model was trained does not matter here.
    fields = set(PromptOptions.model_fields)
    opts = {k: v for k, v in manifest.options.items() if k in fields}
    opts["template"] = manifest.template["file"]
    llm = dict(manifest.llm)
    for key, rel in manifest.llm_folders.items():
        llm[key] = str(_inside(folder, rel))
    try:
        options = PromptOptions.model_validate(opts)
        config = LLMConfig.model_validate(llm)
    except ValidationError as exc:
        raise _bad_manifest(folder, "invalid options or llm", exc) from None
    refused = key_refusal(config, file=folder / MANIFEST, key="llm.api_key_env")
    if refused is not None:  # a model folder may not direct a secret
        raise refused
    if config.backend == "hf":
        resolve_model(config.name, progress=ctx.progress)
    ctx.llm = LLMRunner(load_llm(config), cache=None, progress=ctx.progress)
    if manifest.rag_project is not None:
        ctx.retrieve = ProjectRetrieval(Project.load(manifest.rag_project), ctx.progress)
    strategy = PromptStrategy(options, ctx)
    if strategy.template.version != manifest.template["version"]:
        raise ExportError(
            f"prompt template version {strategy.template.version} differs from the "
            f"exported {manifest.template['version']}",
            file=folder / manifest.template["file"],
            fix=_REEXPORT,
            code="bad-model-file",
        )
    _load_state(strategy, folder, manifest)
    return strategy


class _Recent(dict):  # type: ignore[type-arg]
    """The memo of :meth:`StrategyContext.embed` for a server: the last few lists only."""

    def __setitem__(self, key: Any, value: Any) -> None:
        while len(self) >= 8:
            del self[next(iter(self))]
        super().__setitem__(key, value)
