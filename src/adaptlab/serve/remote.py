"""Remote OpenAI-compatible servers (vLLM, llama.cpp, Ollama) behind a route name.

``--remote NAME=URL[@MODEL]``: when NAME is a served generative candidate, its prompts
(template, shots) are still rendered and its answers parsed here, and only the model
call goes to URL (as MODEL, default NAME: a vLLM LoRA module). Otherwise NAME is a plain
pass-through: the raw input is sent as the user message and the model's text returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adaptlab.backends import load_llm
from adaptlab.backends.runner import LLMRunner
from adaptlab.config import LLMConfig
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.types import Prediction
from adaptlab.core.urls import url_problem
from adaptlab.core.version import __version__
from adaptlab.engine.artifact import ServedModel
from adaptlab.engine.manifest import FORMAT, FORMAT_VERSION, Manifest
from adaptlab.llm.types import ChatRequest, GenerationParams, Message, failure_status


def parse_remote(spec: str) -> tuple[str, str, str]:
    """``NAME=URL[@MODEL]`` → (name, base URL, model); raises :class:`AdaptlabError`.

    URL is checked as every endpoint is (:func:`adaptlab.core.urls.url_problem`): no
    ``user:pass@``, query or fragment, since it is logged and written into the served
    manifest. It gets ``OPENAI_API_KEY`` only where the keys file binds that to it.
    """
    name, eq, rest = spec.partition("=")
    url, at, model = rest.rpartition("@")
    if not at or "/" in model:  # no @MODEL (an @ inside the URL is not one)
        url, model = rest, name
    fix = "write NAME=http://HOST:PORT/v1 or NAME=http://HOST:PORT/v1@MODEL"
    if not eq or not name or not model:
        raise AdaptlabError(f"--remote '{name or spec}' cannot be read", fix=fix)
    problem = url_problem(url)
    if problem is not None:
        # The spec is not repeated: it may hold a secret.
        raise AdaptlabError(f"--remote '{name}': the URL {problem.reason}", fix=problem.fix)
    return name, url.rstrip("/"), model


def _runner(url: str, model: str) -> Any:
    # A live request waits on it: two retries, 30 s each, not the hour a run would wait.
    config = LLMConfig(backend="openai", name=model, base_url=url, max_retries=2, timeout_s=30)
    return LLMRunner(load_llm(config), cache=None)


def attach_remote(model: ServedModel, url: str, remote_model: str) -> None:
    """Send a generative candidate's model calls to ``url`` (as ``remote_model``)."""
    if not model.generative:
        raise AdaptlabError(
            f"'{model.name}' is an encoder candidate; only a generative one can call a "
            "remote model",
            fix="give --remote a new name to proxy a remote server as it is",
        )
    runner = _runner(url, remote_model)
    model.strategy.ctx.llm = runner
    model.manifest.llm = {**(model.manifest.llm or {}), "backend": "openai", "name": remote_model}


class _PassThrough:
    """The raw input as one user message; the model's text as the answer."""

    def __init__(self, url: str, model: str) -> None:
        self.runner = _runner(url, model)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        requests = [ChatRequest((Message("user", t),), GenerationParams()) for t in texts]
        out = []
        for r in self.runner.run_sync(requests):
            failed = failure_status(r.finish_reason)
            out.append(
                Prediction(
                    label=None if failed else r.text,
                    score=0.0 if failed else 1.0,
                    raw=r.text,
                    status=failed or "ok",
                    input_tokens=r.usage.input_tokens,
                    output_tokens=r.usage.output_tokens,
                    latency_ms=r.latency_ms,
                    finish_reason=r.finish_reason,
                )
            )
        return out


def remote_model(name: str, url: str, model: str) -> ServedModel:
    """A pass-through candidate ``name`` answered by ``model`` at ``url``."""

    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        adaptlab_version=__version__,
        created_at="",
        candidate=name,
        strategy="remote",
        options={},
        generative=True,
        task="generation",
        labels={},
        seed=0,
        llm={"backend": "openai", "name": model, "base_url": url},
    )
    return ServedModel(name, Path(url), manifest, _PassThrough(url, model))  # type: ignore[arg-type]
