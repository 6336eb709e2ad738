"""Is the data in a language the encoder was trained on?

An English-only encoder embeds German text poorly: tried on GermEval 2018 (German,
binary), the bundled English all-MiniLM-L6-v2's zero-shot scored 49.6%, below always
answering the majority class. The data's language is guessed per example with
py3langid (a maintained fork of langid.py, Lui & Baldwin, ACL 2012) and compared with
the ``language:`` of the model card (the model folder's README.md front matter).

The same guess picks the language of the built-in prompt templates when the project
sets no ``language:`` (:func:`data_language`), and :func:`generator_language_warning`
says when a generative model does not cover it: the bundled SmolLM2-135M-Instruct's
GGUF file declares ``general.languages: [en]``, and its model card says it was trained
on English data; prompted on the German intents (MASSIVE de-DE) it echoes the input.
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adaptlab.core.format import pct, plural
from adaptlab.core.languages import language_name

#: Share of examples in one language above which the data counts as in that language.
DOMINANT_SHARE = 0.5
_CARD_BYTES = 65_536


@dataclass(frozen=True)
class LanguageGuess:
    """The most common language of a sample: ISO 639-1 ``code`` and its ``share`` (0-1)."""

    code: str
    share: float
    n: int


def detect_language(texts: Sequence[str], sample: int = 300, seed: int = 0) -> LanguageGuess | None:
    """The dominant language of up to ``sample`` texts; None for no texts."""
    import py3langid  # type: ignore[import-untyped]

    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    picked = random.Random(seed).sample(texts, min(sample, len(texts)))
    counts = Counter(py3langid.classify(t)[0] for t in picked)
    code, n = counts.most_common(1)[0]
    return LanguageGuess(code, n / len(picked), len(picked))


def model_languages(path: str | Path) -> set[str] | None:
    """The languages a model card declares (``language: en`` or a list); None when unknown.

    "multilingual" comes back as ``{"multilingual"}``. Only the first 64 KiB of the
    card are read, with safe YAML: a model folder is data.
    """
    import yaml

    card = Path(path) / "README.md"
    try:
        with card.open("rb") as fh:
            text = fh.read(_CARD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return None
    langs = meta.get("language") if isinstance(meta, dict) else None
    if isinstance(langs, str):
        langs = [langs]
    if not isinstance(langs, list) or not langs:
        return None
    return {str(x).lower() for x in langs}


#: A multilingual encoder of the bundled one's size (50+ languages, Apache-2.0).
MULTILINGUAL_ENCODER = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"


def language_warning(
    texts: Sequence[str], model_path: str | Path, model_name: str
) -> tuple[str, str] | None:
    """(message, fix) when the data's language is not among the encoder's, else None.

    The fix is a complete sentence that works offline: it says how to fetch a
    multilingual encoder on a machine with internet and point ``model.name`` at its
    folder, or to rely on the candidates that need no encoder.
    """
    declared = model_languages(model_path)
    if declared is None or "multilingual" in declared:
        return None
    guess = detect_language(texts)
    if guess is None or guess.share < DOMINANT_SHARE or guess.code in declared:
        return None
    message = (
        f"{guess.share:.0%} of the examples read as '{guess.code}', but the encoder "
        f"{model_name} was trained on {', '.join(sorted(declared))}: its embeddings (zero-shot, "
        "few-shot, kNN, finetune, retrieval) will be weak"
    )
    fix = (
        "set model.name in adaptlab.yaml to the folder of a multilingual encoder: on a "
        'machine with internet run python -c "from sentence_transformers import '
        f"SentenceTransformer as S; S('{MULTILINGUAL_ENCODER}').save('multilingual')\", "
        "copy the folder 'multilingual' into the project and write 'model: {name: "
        "multilingual}'; or rely on the candidates that need no encoder: the tfidf-baseline, "
        "and the LLM candidates whose model covers the language."
    )
    return message, fix


# ---------------------------------------------------------------- the data's language

#: How many examples the prompt language is guessed from: py3langid classifies 1,000
#: short texts in about 0.03 s once its model is loaded (about 0.6 s, once a process).
LANGUAGE_SAMPLE = 1000


@dataclass(frozen=True)
class DataLanguage:
    """The language the prompts are written in.

    ``code`` is ISO 639-1 (py3langid may also answer a few three-letter codes);
    ``source`` is "set" (the project's ``language:``), "detected" (the most common
    language of the examples, ``share`` of ``n`` sampled) or "default" (English: no
    examples, or no language holds more than :data:`DOMINANT_SHARE` of them).
    """

    code: str
    source: Literal["set", "detected", "default"]
    share: float | None = None
    n: int = 0

    @property
    def name(self) -> str:
        """ "German (de)"."""
        return f"{language_name(self.code)} ({self.code})"

    def describe(self) -> str:
        """The language and where it came from: "German (de; detected in 94% of 1,000
        examples)", "German (de; set by language: in adaptlab.yaml)" or "English (en; by
        default, …)"."""
        if self.source == "set":
            how = "set by language: in adaptlab.yaml"
        elif self.source == "detected":
            how = f"detected in {pct(self.share or 0)} of {plural(self.n, 'example')}"
        elif self.share is None:
            how = "by default, with no examples to detect it from"
        else:
            how = (
                f"by default: no language holds most of the examples, the most common has "
                f"{pct(self.share)} of {plural(self.n, 'example')}"
            )
        return f"{language_name(self.code)} ({self.code}; {how})"

    def as_info(self) -> dict[str, Any]:
        """JSON-ready, for a result's info and the report."""
        return {"code": self.code, "source": self.source, "share": self.share, "n": self.n}


def data_language(configured: str | None, texts: Sequence[str]) -> DataLanguage:
    """The project's ``language:`` when set (``texts`` unused), else the dominant
    language of up to :data:`LANGUAGE_SAMPLE` of ``texts`` (seeded, so a run, a dry run
    and ``data check`` agree), else English."""
    if configured:
        return DataLanguage(configured, "set")
    guess = detect_language(texts, sample=LANGUAGE_SAMPLE)
    if guess is None:
        return DataLanguage("en", "default")
    if guess.share <= DOMINANT_SHARE:
        return DataLanguage("en", "default", guess.share, guess.n)
    return DataLanguage(guess.code, "detected", guess.share, guess.n)


# ---------------------------------------------------------------- generative models

_MULTI = frozenset({"multilingual"})
#: Generative model families by a pattern of their name (an API model id, an Ollama
#: tag, a hub id, a GGUF file's ``general.basename``/``general.name``, a folder's
#: ``config.json`` ``model_type`` or its card's ``base_model``), with the languages
#: their model cards name. Checked before a card's own ``language:``, which some
#: multilingual models leave at ``en`` (Qwen2.5's cards do).
KNOWN_GENERATORS: tuple[tuple[str, frozenset[str], str], ...] = (
    # "trained on English data" (model card, HuggingFaceTB/SmolLM2-135M-Instruct)
    (r"smollm2|smollm-", frozenset({"en"}), "the SmolLM2 model card (trained on English data)"),
    (r"smollm3", frozenset({"en", "fr", "es", "de", "it", "pt"}), "the SmolLM3 model card"),
    (
        r"qwen ?[23]|qwen2_moe|qwen3_moe",
        _MULTI,
        "the Qwen2.5 and Qwen3 model cards (29+ languages)",
    ),
    (
        r"llama[- ]?3\.[123]",
        frozenset({"en", "de", "fr", "it", "pt", "hi", "es", "th"}),
        "the Llama 3.1 model card",
    ),
    (r"gemma[- ]?3", _MULTI, "the Gemma 3 model card (140+ languages)"),
    (r"mistral-(?:nemo|small|large)|ministral", _MULTI, "the Mistral model cards"),
    (r"(?:^|[/:])(?:gpt-4o|gpt-4\.1|gpt-5|o[134](?:-mini)?)\b", _MULTI, "the OpenAI model docs"),
    (r"claude", _MULTI, "the Anthropic model docs"),
)

#: The types of GGUF metadata values (ggml docs/gguf.md, "Standardized key-value
#: pairs"): fixed sizes in bytes; 8 is a string, 9 an array.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_MAX_BYTES = 4 << 20


def gguf_metadata(path: str | Path) -> dict[str, Any]:
    """The ``general.*`` metadata of a GGUF file (version 2 or 3), read from its header.

    The reader stops at the first ``tokenizer.*`` key or after 4 MiB: the ``gguf``
    package's GGUFReader parses every token of the vocabulary first (4-7 s for the
    bundled 98 MB SmolLM2 file on 2 cores), this takes milliseconds. A file that is not
    GGUF, or ends early, gives what was read so far (possibly nothing).
    """
    out: dict[str, Any] = {}
    try:
        with Path(path).open("rb") as fh:
            if fh.read(4) != b"GGUF":
                return out
            head = fh.read(20)
            if len(head) < 20:
                return out
            version, _tensors, kv_count = struct.unpack("<IQQ", head)
            if version not in (2, 3):
                return out

            def take(n: int) -> bytes:
                if n < 0 or fh.tell() + n > _GGUF_MAX_BYTES:
                    raise EOFError
                data = fh.read(n)
                if len(data) < n:
                    raise EOFError
                return data

            def string() -> str:
                (n,) = struct.unpack("<Q", take(8))
                return take(n).decode("utf-8", errors="replace")

            def value(kind: int) -> Any:
                if kind == 8:
                    return string()
                if kind == 9:
                    (inner,) = struct.unpack("<I", take(4))
                    (count,) = struct.unpack("<Q", take(8))
                    return [value(inner) for _ in range(min(count, 1 << 20))]
                size = _GGUF_SIZES.get(kind)
                if size is None:
                    raise EOFError
                fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?"}
                fmt |= {10: "Q", 11: "q", 12: "d"}
                return struct.unpack("<" + fmt[kind], take(size))[0]

            for _ in range(min(kv_count, 10_000)):
                key = string()
                if key.startswith("tokenizer."):
                    break
                (kind,) = struct.unpack("<I", take(4))
                found = value(kind)
                if key.startswith("general."):
                    out[key] = found
    except (OSError, EOFError, struct.error, RecursionError):  # arrays nested without end
        pass
    return out


def _card(folder: Path) -> dict[str, Any]:
    """The front matter of ``folder/README.md`` (first 64 KiB, safe YAML), or {}."""
    import yaml

    try:
        with (folder / "README.md").open("rb") as fh:
            text = fh.read(_CARD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return {}
    end = text.find("\n---", 3) if text.startswith("---") else -1
    if end < 0:
        return {}
    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _known(names: Iterable[str]) -> tuple[frozenset[str], str] | None:
    for name in names:
        low = name.lower()
        for pattern, langs, source in KNOWN_GENERATORS:
            if re.search(pattern, low):
                return langs, source
    return None


def _codes(value: Any) -> set[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    return {str(x).lower() for x in value}


def generator_languages(name: str, path: Path | None) -> tuple[set[str], str] | None:
    """The languages a generative model covers and where that is written, or None.

    ``name`` is the model as configured (an API id, an Ollama tag, a bundled alias, a
    path); ``path`` its local GGUF file or ``save_pretrained`` folder, if any. First
    :data:`KNOWN_GENERATORS` by any name the model goes by, then a GGUF file's
    ``general.languages`` or a folder's model card ``language:``. ``{"multilingual"}``
    stands for a model trained on many languages.
    """
    names = [name]
    gguf: dict[str, Any] = {}
    card: dict[str, Any] = {}
    if path is not None and path.is_file():
        gguf = gguf_metadata(path)
        names += [str(gguf.get(k, "")) for k in ("general.basename", "general.name")]
    elif path is not None and path.is_dir():
        card = _card(path)
        names += [str(card.get("base_model", "")), str(card.get("model_name", ""))]
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8")[: 1 << 20])
            names.append(str(config.get("model_type", "")) if isinstance(config, dict) else "")
        except (OSError, ValueError):
            pass
    known = _known(n for n in names if n)
    if known is not None:
        return set(known[0]), known[1]
    langs = _codes(gguf.get("general.languages"))
    if langs:
        return langs, "its GGUF metadata (general.languages)"
    langs = _codes(card.get("language"))
    if langs:
        return langs, "its model card (README.md, language:)"
    return None


#: A multilingual instruction model small enough for a CPU (0.5B, Apache-2.0; its card
#: lists 29+ languages, German, French and Spanish among them).
MULTILINGUAL_GENERATOR = "Qwen/Qwen2.5-0.5B-Instruct"


def generator_language_warning(
    language: DataLanguage, llm: str, model: str, covers: tuple[set[str], str] | None
) -> tuple[str, str] | None:
    """(message, fix) when generative model ``model`` (entry ``llm`` under ``llms:``)
    does not cover the data's language, else None (also when nothing is known).

    ``covers`` is :func:`generator_languages`'s answer. The fix is a complete sentence
    that works offline: fetch a multilingual model on a machine with internet and
    point the entry's ``name`` at its folder, or rely on the encoder candidates.
    """
    if covers is None:
        return None
    langs, source = covers
    if "multilingual" in langs or language.code in langs:
        return None
    covered = ", ".join(f"{language_name(c)} ({c})" for c in sorted(langs))
    message = (
        f"the data is {language.describe()}, but llm '{llm}' ({model}) covers only "
        f"{covered}, per {source}: its prompted answers in {language_name(language.code)} "
        "will be weak"
    )
    folder = MULTILINGUAL_GENERATOR.split("/")[1].lower()
    fix = (
        f"point llms.{llm}.name in adaptlab.yaml at a multilingual model: on a machine with "
        'internet run python -c "from huggingface_hub import snapshot_download as d; '
        f"d('{MULTILINGUAL_GENERATOR}', local_dir='{folder}')\" (Qwen2.5 covers 29 languages; "
        "Llama 3.2 and SmolLM3 also cover German, French and Spanish), copy the folder "
        f"'{folder}' to this machine and write its path after 'name:'; or compare only the "
        "candidates that do not prompt this model (the TF-IDF baseline, and the encoder "
        "candidates where the encoder covers the language)."
    )
    return message, fix
