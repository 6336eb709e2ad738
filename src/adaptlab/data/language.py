"""Is the data in a language the encoder was trained on?

An English-only encoder embeds German text poorly: tried on GermEval 2018 (German,
binary), the bundled English all-MiniLM-L6-v2's zero-shot scored 49.6%, below always
answering the majority class. The data's language is guessed per example with
py3langid (a maintained fork of langid.py, Lui & Baldwin, ACL 2012) and compared with
the ``language:`` of the model card (the model folder's README.md front matter).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
        "multilingual}'; or rely on the tfidf-baseline and LLM candidates, which need no "
        "encoder."
    )
    return message, fix
