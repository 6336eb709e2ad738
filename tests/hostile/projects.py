"""Project folders for the state, terminal and concurrency cases: no model needed.

``llm_project`` points LLM candidates at a fake server (a run without the encoder);
``stored_project`` writes a finished run straight into ``runs.db`` with
:class:`RunStore`, so ``report`` has something to read without running anything.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from adaptlab.engine import load_config
from adaptlab.store import PredictionRow, ResultRow, RunStore
from tests.fakes.fake_llm import ChatCall
from tests.hostile.conftest import GOOD, LABELS, base_config, write_project

_INPUT = re.compile(r"<input>\n(.*?)\n</input>", re.S)
GOLD = {r["text"]: r["label"] for r in GOOD}


def oracle(call: ChatCall) -> str:
    """The gold label of the ticket in the prompt (the last input; earlier ones are examples)."""
    found = _INPUT.findall(call.user_text)
    return GOLD.get(found[-1], LABELS[0]) if found else LABELS[0]


def llm_project(
    root: Path,
    base_url: str,
    names: tuple[str, ...] = ("zero",),
    *,
    project: str = "hostile",
    labels: dict[str, str] | None = None,
    data: bytes | None = None,
    **llm: Any,
) -> Path:
    cfg = base_config(
        name=project,
        llms={"chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": base_url, **llm}},
        candidates=[{"name": n, "strategy": "llm-zero-shot", "llm": "chat"} for n in names],
    )
    if labels is not None:
        cfg["labels"] = labels
    return write_project(root, data, config=cfg)


def stored_project(
    root: Path,
    labels: list[str],
    n: int,
    *,
    names: tuple[str, ...] = ("zero-shot", "rag"),
    project: str = "stored",
    seed: int = 0,
) -> Path:
    """A project whose ``runs.db`` holds one finished run of ``names`` over ``n`` predictions."""
    rows = [{"text": f"ticket {i}", "label": labels[i % len(labels)]} for i in range(n)]
    cfg = base_config(
        name=project,
        labels={label: f"about {label}" for label in labels},
        candidates=[{"name": c, "strategy": "zero-shot"} for c in names],
    )
    cfg["evaluation"] = {"bootstrap_resamples": 200}
    write_project(root, "".join(json.dumps(r) + "\n" for r in rows).encode(), config=cfg)
    conf = load_config(root / "adaptlab.yaml")
    rnd = random.Random(seed)
    with RunStore(root / ".adaptlab" / "runs.db") as store:
        store.start_run(
            "run1",
            project=project,
            config=conf.model_dump(mode="json"),
            data_fingerprint="f",
            seed=0,
            model=conf.model.model_dump(mode="json"),
            split={"train": n, "val": 0, "test": n},
        )
        for pos, name in enumerate(names):
            right = 0.5 + 0.4 * pos / max(1, len(names) - 1)
            preds = []
            for i, r in enumerate(rows):
                wrong = labels[rnd.randrange(len(labels))]
                pred = r["label"] if rnd.random() < right else wrong
                preds.append(PredictionRow(f"d:{i}", r["text"], r["label"], pred, 1.0, 2.0 + pos))
            key = f"key{pos}"
            store.save_result(
                ResultRow(key, name, "zero-shot", {}, 1.5, 1.5, 0.2, 0.2, n, False, {}), preds, []
            )
            store.link("run1", pos, name, key, reused=False)
        store.finish_run("run1")
    return root


def run_statuses(root: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(root / ".adaptlab" / "runs.db") as conn:
        return [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY rowid")]
