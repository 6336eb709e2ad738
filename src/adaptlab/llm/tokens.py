"""Token counts before a call: an offline heuristic, and tiktoken where it needs no network.

tiktoken downloads each encoding's BPE file on first use and caches it under
``$TIKTOKEN_CACHE_DIR`` (else ``$DATA_GYM_CACHE_DIR``, else ``<tempdir>/data-gym-cache``)
as ``sha1(url)``. A run must never stall on, or leak, that download, so
:func:`openai_token_count` uses tiktoken only when the file is already cached with the
right content, and otherwise falls back to :func:`estimate_tokens` with ``exact=False``.
To enable exact counts offline, copy the cache folder from a machine that has it, or
run ``tiktoken.get_encoding("o200k_base")`` once where the internet is reachable.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any

# Chat format overhead from OpenAI's cookbook ("How to count tokens with tiktoken"):
# every message is wrapped as <|start|>{role}<|message|>{content}<|end|>, 3 tokens
# besides the role and content, and every reply is primed with
# <|start|>assistant<|message|>, 3 more. Valid for gpt-3.5-turbo-0613 and later
# (gpt-4, gpt-4o, gpt-4.1, o-series); gpt-3.5-turbo-0301 used 4 per message.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMER_TOKENS = 3
# The standard roles (system, user, assistant, developer, tool) are one token each in
# cl100k_base and o200k_base; the estimate uses that instead of the character rule.
_ROLE_TOKENS_ESTIMATE = 1
CHARS_PER_TOKEN = 4

# Han ideographs (with extensions and compatibility forms), kana, Hangul, CJK
# punctuation and full-width forms.
_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0003134f]"
)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate: about 4 characters per token, 1 per CJK character.

    Rounded up and at least 1 for non-empty text (0 for ""). It fits English BPE
    vocabularies (cl100k/o200k) on average; German and other inflected languages, code
    and digits run about 20-40 % more tokens than this, so treat it as a planning
    number, not a bill.
    """
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return max(1, cjk + math.ceil((len(text) - cjk) / CHARS_PER_TOKEN))


# Where tiktoken 0.7-0.14 (tiktoken_ext/openai_public.py) fetches each encoding, with
# the sha256 it checks; a test compares this with the installed tiktoken's source.
_BLOB = "https://openaipublic.blob.core.windows.net"
_R50K = (
    f"{_BLOB}/encodings/r50k_base.tiktoken",
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
)
_P50K = (
    f"{_BLOB}/encodings/p50k_base.tiktoken",
    "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
)
_CL100K = (
    f"{_BLOB}/encodings/cl100k_base.tiktoken",
    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
)
_O200K = (
    f"{_BLOB}/encodings/o200k_base.tiktoken",
    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
)
_GPT2 = (
    (
        f"{_BLOB}/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    (
        f"{_BLOB}/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
)
ENCODING_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "gpt2": _GPT2,
    "r50k_base": (_R50K,),
    "p50k_base": (_P50K,),
    "p50k_edit": (_P50K,),
    "cl100k_base": (_CL100K,),
    "o200k_base": (_O200K,),
    "o200k_harmony": (_O200K,),
}


def tiktoken_cache_dir() -> str | None:
    """The folder tiktoken reads its cache from; None when caching is disabled (``""``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return cache_dir or None


def cache_path(url: str, cache_dir: str) -> str:
    """Where tiktoken caches the file fetched from ``url``."""
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


@functools.lru_cache(maxsize=32)
def _file_has_hash(path: str, mtime_ns: int, size: int, sha256: str) -> bool:
    # Keyed by mtime and size so a replaced file is hashed again, an unchanged one once.
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == sha256


def encoding_is_cached(encoding: str) -> bool:
    """Whether tiktoken can build ``encoding`` from its cache alone.

    Every file must be present with the sha256 tiktoken expects: tiktoken deletes a file
    with another hash and downloads it again. Unknown encodings count as not cached.
    """
    files = ENCODING_FILES.get(encoding)
    cache_dir = tiktoken_cache_dir()
    if files is None or cache_dir is None:
        return False
    for url, sha256 in files:
        path = cache_path(url, cache_dir)
        try:
            st = os.stat(path)
            if not _file_has_hash(path, st.st_mtime_ns, st.st_size, sha256):
                return False
        except OSError:
            return False
    return True


_LOADED: dict[str, Any] = {}  # encoding name -> tiktoken.Encoding


def _encoding_for(model: str) -> Any | None:
    """The model's tiktoken encoding if it loads without network, else None."""
    try:
        import tiktoken
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return None
    # ft:gpt-4.1-mini-2025-04-14:org::id -> gpt-4.1-mini-2025-04-14; tiktoken's own
    # 'ft:gpt-4' prefix would map every ft:gpt-4.1 model to cl100k_base.
    base = model.split(":")[1] if model.startswith("ft:") and ":" in model[3:] else model
    try:
        name = encoding_name_for_model(base)
    except KeyError:
        return None
    if name in _LOADED:
        return _LOADED[name]
    if not encoding_is_cached(name):
        return None
    try:
        enc = tiktoken.get_encoding(name)
    except Exception:  # a cache that passed the check but does not parse
        return None
    _LOADED[name] = enc
    return enc


def openai_token_count(model: str, messages: Sequence[tuple[str, str]]) -> tuple[int, bool]:
    """Prompt tokens of a chat request to an OpenAI model, and whether the count is exact.

    ``messages`` are ``(role, content)`` pairs. The count is
    ``3 + sum(3 + tokens(role) + tokens(content))`` (see ``TOKENS_PER_MESSAGE``). It is
    exact (``True``) when tiktoken knows the model and its encoding is cached locally;
    otherwise roles count 1 token, contents :func:`estimate_tokens`, and it is ``False``.
    Never downloads anything.
    """
    enc = _encoding_for(model)
    total = REPLY_PRIMER_TOKENS + TOKENS_PER_MESSAGE * len(messages)
    if enc is None:
        total += sum(_ROLE_TOKENS_ESTIMATE + estimate_tokens(c) for _, c in messages)
        return total, False
    # disallowed_special=(): a prompt that contains "<|endoftext|>" is counted as text.
    for role, content in messages:
        total += len(enc.encode(role, disallowed_special=()))
        total += len(enc.encode(content, disallowed_special=()))
    return total, True


__all__ = [
    "CHARS_PER_TOKEN",
    "ENCODING_FILES",
    "REPLY_PRIMER_TOKENS",
    "TOKENS_PER_MESSAGE",
    "cache_path",
    "encoding_is_cached",
    "estimate_tokens",
    "openai_token_count",
    "tiktoken_cache_dir",
]
