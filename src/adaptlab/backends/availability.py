"""Whether a generative model can run here: its key is set, or its local files exist."""

from __future__ import annotations

from adaptlab.backends import BACKENDS, llm_key_var
from adaptlab.backends.gguf import local_model_problem
from adaptlab.config import LLMConfig
from adaptlab.llm.keys import find_key


def llm_unavailable(llm: LLMConfig) -> str | None:
    """Why this model cannot run here (no key, no local folder), or None when it can."""
    cls = BACKENDS.get(llm.backend)
    if getattr(cls, "local", False):
        return local_model_problem(llm.name)
    var = llm_key_var(llm)
    if var and llm.base_url is None and not find_key(var):
        local = " (or set base_url to a local server)" if llm.backend == "openai" else ""
        return f"no {var} for {llm.backend}:{llm.name}{local}"
    return None
