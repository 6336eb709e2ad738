"""The prompt optimiser on German intents with the bundled SmolLM2, through ``adaptlab run``.

A project is written to ``--out`` (outside the repository; the data is read from
``../shared/data/german_intents`` and subsampled, seed 0): ``--train`` rows of which
``--val`` are carved out for validation, and ``--test`` rows of the official test file.
Two candidates answer with SmolLM2-135M-Instruct: ``zero`` (llm-zero-shot, the
unoptimised prompt) and ``search`` (prompt-search from that prompt, ``--minutes``
max_minutes). Prints default -> optimised validation and test accuracy with Wilson 95 %
intervals, and the search's calls against its printed maximum.

    python bench/prompt_search.py --out /tmp/ps_bench --minutes 15
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/stats.py, imported too
from stats import wilson

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "german_intents"
LABELS = {
    "alarm": "Wecker und Alarme stellen, ändern, löschen",
    "audio": "Lautstärke und Ton der Wiedergabe",
    "calendar": "Termine, Erinnerungen und Kalender",
    "cooking": "Rezepte und Kochen",
    "datetime": "Datum, Uhrzeit, Zeitzonen",
    "email": "E-Mails lesen, schreiben, Kontakte",
    "general": "Allgemeines: Witze, Smalltalk, Rückfragen",
    "iot": "Smart Home: Licht, Staubsauger, Steckdosen, Kaffeemaschine",
    "lists": "Listen: Einkaufsliste, To-do-Listen",
    "music": "Musikgeschmack, Infos zu Liedern",
    "news": "Nachrichten",
    "play": "Musik, Radio, Podcasts, Hörbücher oder Spiele abspielen",
    "qa": "Wissensfragen, Definitionen, Fakten, Rechnen",
    "recommendation": "Empfehlungen: Restaurants, Filme, Veranstaltungen",
    "social": "Soziale Netzwerke, Beschwerden an Firmen",
    "takeaway": "Essen bestellen, Lieferdienst",
    "transport": "Verkehr, Züge, Taxi, Tickets",
    "weather": "Wetter",
}


def fmt(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({k}/{n})"


def write_project(out: Path, n_train: int, n_val: int, n_test: int, minutes: float) -> None:
    def rows(name: str) -> list[dict[str, str]]:
        with (DATA / name).open(encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    rng = random.Random(0)
    train, test = rows("train.csv"), rows("test.csv")
    rng.shuffle(train)
    rng.shuffle(test)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, chosen in (("train.jsonl", train[:n_train]), ("test.jsonl", test[:n_test])):
        with (out / "data" / name).open("w", encoding="utf-8") as fh:
            for r in chosen:
                fh.write(json.dumps({"text": r["text"], "label": r["label"]}) + "\n")
    base = {"max_tokens": 16}
    cfg = {
        "name": "german-intents-prompt-search",
        "task": "classification",
        "language": "de",
        "data": {
            "path": "data/train.jsonl",
            "test_path": "data/test.jsonl",
            "val_size": n_val / n_train,
        },
        "labels": LABELS,
        "llms": {"smol": {"backend": "hf", "name": "smollm2-135m-instruct", "batch_size": 8}},
        "candidates": [
            {"name": "zero", "strategy": "llm-zero-shot", "llm": "smol", "params": base},
            {
                "name": "search",
                "strategy": "prompt-search",
                "llm": "smol",
                "params": {**base, "max_minutes": minutes, "max_trials": 12},
            },
        ],
        "evaluation": {"baseline": False, "latency_samples": 0, "bootstrap_resamples": 200},
        "seed": 0,
    }
    (out / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=15.0)
    args = ap.parse_args()
    write_project(args.out, args.train, args.val, args.test, args.minutes)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "adaptlab", "run", "-p", str(args.out)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    (args.out / "run.log").write_text(log)
    printed = re.findall(r"prompt search: .*", log)
    print("\n".join(printed))
    if proc.returncode:
        print(log[-3000:])
        raise SystemExit(proc.returncode)

    from adaptlab import Project, summarize_project

    summary = summarize_project(Project.load(args.out))
    cands = {c.name: c for c in summary.candidates}
    search = cands["search"].info
    tuning = search["tuning"]
    n_val = len(tuning["default"]["val_per_example"])
    d_val = int(sum(tuning["default"]["val_per_example"]))
    t_val = int(sum(tuning["tuned"]["val_per_example"]))
    print(f"run wall time: {wall / 60:.1f} min (adaptlab run, both candidates)")
    print(f"split: {summary.split}")
    print(f"default params: {tuning['default']['params']}")
    print(f"tuned params:   {tuning['tuned']['params']}")
    print(f"decision: {search['prompt_search']['decision']['why']}")
    print(f"validation: default {fmt(d_val, n_val)} -> searched {fmt(t_val, n_val)}")
    for name in ("zero", "search"):
        c = cands[name]
        n = summary.split["test"]
        k = round(c.accuracy * n)
        print(f"test {name}: {fmt(k, n)}")
    budget = tuning["budget"]
    planned = search["prompt_search"]["planned"]
    print(f"budget: {json.dumps(budget)}; planned at most {planned['calls']} calls")
    best = search["prompt_search"]["decision"]
    print(f"best setting on validation: {best['best_params']} {best['best_val_score']:.3f}")
    print(f"trials: {len(tuning['trials'])} evaluations")


if __name__ == "__main__":
    main()
