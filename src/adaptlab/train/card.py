"""The model card (README.md) saved beside each trained adapter or model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_card(
    folder: Path,
    *,
    which: str,
    base: Path,
    method: str,
    data_fingerprint: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
) -> Path:
    """Write ``folder/README.md``: what was trained from what, how, and how well.

    ``which`` is 'best' (the step with the lowest validation loss) or 'last'.
    The YAML front matter uses the Hugging Face model-card keys (``base_model``,
    ``library_name``, ``tags``) so hub tools read it. Returns the card's path.
    """
    library = "transformers" if method == "full" else "peft"
    lines = [
        "---",
        f"base_model: {json.dumps(str(base))}",
        f"library_name: {library}",
        "tags:",
        "- adaptlab",
        f"- {method}",
        "---",
        "",
        f"# {method} fine-tune of `{base.name}` ({which} checkpoint)",
        "",
        "Trained locally by adaptlab (transformers Trainer"
        + (" + PEFT" if library == "peft" else "")
        + "); the loss covers the assistant's answers only.",
        "",
        f"- base model: `{base}`",
        f"- data fingerprint: `{data_fingerprint or 'unknown'}`",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {_fmt(v)} |" for k, v in metrics.items()),
        "",
        "## Hyperparameters",
        "",
        "| name | value |",
        "|---|---|",
        *(f"| {k} | {_fmt(v)} |" for k, v in hyperparameters.items()),
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
