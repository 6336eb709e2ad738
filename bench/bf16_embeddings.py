"""fp32 vs bf16 autocast for the bundled encoder, measured in one run.

Prints texts/s for both, the ratio, and the lowest cosine between the two vectors of
the same text; `precision: auto` turns bf16 on only where the CPU has native bf16.

    python bench/bf16_embeddings.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
        bf16_supported,
    )

    tickets = Path(str(resources.files("adaptlab") / "examples/support_tickets/tickets.jsonl"))
    texts = [json.loads(line)["text"] for line in tickets.open()]
    backend = SentenceTransformerBackend(SentenceTransformerOptions(precision="fp32"))
    results: dict[bool, tuple[float, np.ndarray]] = {}
    for use_bf16 in (False, True):
        backend.use_bf16 = use_bf16
        backend.embed(texts[:64])  # warm-up: kernels and allocator
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            vectors = backend.embed(texts)
            best = min(best, time.perf_counter() - t0)
        results[use_bf16] = (best, vectors)
    (t32, v32), (t16, v16) = results[False], results[True]
    cosine = float((v32 * v16).sum(axis=1).min())
    print(f"texts: {len(texts)}, native bf16 on this machine: {bf16_supported('cpu')}")
    print(f"fp32: {len(texts) / t32:.0f} texts/s   bf16 autocast: {len(texts) / t16:.0f} texts/s")
    print(f"bf16 time / fp32 time = {t16 / t32:.2f}   min cosine(fp32, bf16) = {cosine:.5f}")


if __name__ == "__main__":
    main()
