"""The two fine-tuning methods on the example task: same split, seed and budget.

`head` (encoder + softmax head, cross-entropy) against `setfit` (contrastive pairs,
then logistic regression). The better one is the `finetune` default.

    python bench/finetune_methods.py [--dir bench/results/finetune-methods]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path("bench/results/finetune-methods"))
    args = ap.parse_args()
    from adaptlab.cli.run import run_and_summarize
    from adaptlab.engine.scaffold import init_project

    if args.dir.exists():
        shutil.rmtree(args.dir)
    init_project(args.dir, example="support-tickets")
    cfg = yaml.safe_load((args.dir / "adaptlab.yaml").read_text())
    cfg["candidates"] = [
        {"name": "head", "strategy": "finetune", "params": {"method": "head", "epochs": 8}},
        {
            "name": "setfit",
            "strategy": "finetune",
            "params": {"method": "setfit", "epochs": 2, "pair_iterations": 5},
        },
    ]
    (args.dir / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _, summary = run_and_summarize(args.dir)
    head, setfit = summary.candidate("head"), summary.candidate("setfit")
    for c in (head, setfit):
        assert c.metrics is not None  # classification candidates
        print(
            f"{c.name}: accuracy {100 * c.accuracy:.1f}% macro-F1 {100 * c.metrics.macro_f1:.1f}% "
            f"fit {c.fit_seconds:.0f} s"
        )
    print(f"setfit fit time / head fit time = {setfit.fit_seconds / head.fit_seconds:.2f}")


if __name__ == "__main__":
    main()
