"""Where a candidate's model runs, and so whether it is hosted.

The one definition adaptlab uses (:func:`model_location`), read from a candidate's
``llms:`` entry: a backend that runs its model in this process (``hf``, ``fake``;
:data:`adaptlab.llm.prices.SELF_HOSTED_BACKENDS`) is "in-process"; any other backend behind a
``base_url`` whose host is a loopback name or address (``localhost``, ``127.0.0.1``,
``::1``) is a "local-server" (an Ollama or vLLM on this machine); anything else,
a provider's API or a server elsewhere (a private-network host such as
``10.0.0.5`` or ``vllm`` included), is "remote".

Two questions are asked of it: whether inputs leave this machine's network
(:func:`hosted`: "remote"; the profile's ``data_may_leave: false`` rules such
candidates out), and whether a served model's failure is an upstream server's
(``adaptlab serve`` answers 502: anything not "in-process").
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from adaptlab.config import ProjectConfig
from adaptlab.llm.prices import SELF_HOSTED_BACKENDS

Location = Literal["in-process", "local-server", "remote"]

#: Hosts a ``base_url`` may name and still be this machine.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def model_location(backend: str, base_url: str | None) -> Location:
    """Where the model of an ``llms:`` entry with ``backend`` and ``base_url`` runs."""
    if backend in SELF_HOSTED_BACKENDS:
        return "in-process"
    if base_url is not None and (urlparse(base_url).hostname or "") in LOOPBACK_HOSTS:
        return "local-server"
    return "remote"


def hosted(cfg: ProjectConfig, name: str) -> bool:
    """Whether candidate ``name`` of ``cfg`` sends its inputs out of this machine.

    False for a candidate without an ``llm`` (an encoder or classical model runs
    here), or whose ``llm`` is not among ``cfg.llms``; else whether its model is
    "remote" (:func:`model_location`).
    """
    cand = next((c for c in cfg.candidates if c.name == name), None)
    if cand is None or cand.llm is None or cand.llm not in cfg.llms:
        return False
    llm = cfg.llms[cand.llm]
    return model_location(llm.backend, llm.base_url) == "remote"


#: What machine a self-hosted candidate needs under ``profile.hosting: dedicated``.
Server = Literal["none", "cpu", "gpu"]


def server_needed(cfg: ProjectConfig, name: str, route: str, generative: bool) -> Server:
    """The machine candidate ``name`` needs of its own when served (``profile.hosting``
    'dedicated'): "none" for a model billed per request by a provider or served from
    elsewhere (not "in-process") and for the classical TF-IDF baseline (it answers in
    about a millisecond inside the serving process); "gpu" for a generative model run
    here (a generative model is served on a GPU in production) or any model configured
    on a CUDA device; "cpu" for an encoder (zero-shot, few-shot, kNN, fine-tune)."""
    if route == "classical":
        return "none"
    cand = next((c for c in cfg.candidates if c.name == name), None)
    if cand is not None and cand.llm is not None and cand.llm in cfg.llms:
        llm = cfg.llms[cand.llm]
        if model_location(llm.backend, llm.base_url) != "in-process":
            return "none"
        return "gpu" if generative or llm.device.startswith("cuda") else "cpu"
    return "gpu" if cfg.model.device.startswith("cuda") else "cpu"


def server_monthly_usd(cfg: ProjectConfig, name: str, route: str, generative: bool) -> float:
    """USD a month for the machine candidate ``name`` needs (:func:`server_needed`) at
    ``cost.cpu_server_monthly_usd`` / ``cost.gpu_server_monthly_usd``; 0.0 under
    ``profile.hosting: shared`` (an existing server: only measured time is paid)."""
    if cfg.profile.hosting == "shared":
        return 0.0
    need = server_needed(cfg, name, route, generative)
    return {
        "none": 0.0,
        "cpu": cfg.cost.cpu_server_monthly_usd,
        "gpu": cfg.cost.gpu_server_monthly_usd,
    }[need]
