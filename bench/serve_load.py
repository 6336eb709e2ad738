"""Load test of ``adaptlab serve`` on loopback: dynamic batching against one request at a time.

Builds the bundled support-tickets project (or takes ``--project``), runs the encoder
candidate (default ``zero-shot``: one MiniLM forward pass per input, the same cost as
the fine-tuned encoder), then starts ``adaptlab serve`` twice as a real process on
127.0.0.1 — once with dynamic batching (``--max-batch 32``), once serving one request at
a time (``--max-batch 1``) — and sends each N requests (distinct tickets) at a fixed
concurrency through ``POST /v1/chat/completions`` with an API key. Every answer is
checked against ``adaptlab predict`` at the same ``--precision`` for the same input; a
wrong label or a non-200 is an error.

``--precision`` (fp32, the default, bf16 or auto) goes to both ``adaptlab serve`` and
``adaptlab predict``. The encoder runs batches of up to 4 inputs in fp32 whatever the
precision (``adaptlab.backends.sentence_transformers``), so one request at a time is
always fp32: with bf16 the ratio compares bf16 batches with fp32 single inputs. With a
precision other than fp32 the served answers are also compared with fp32 predict, and
the two predicts with each other: label differences and the largest score difference.

First it times the model alone, in its own process without a server (fp32 batches of 1
and of 32, bf16 batches of 32, in turns): the ceiling of each mode. A batch runs as
``adaptlab.engine.artifact`` loads an encoder: sorted by length in passes of 16; the
same batches in one pass each (padded to the longest) are timed beside them, with the
tokens each way. Then prints, for each mode:
errors, throughput (requests/s), latency p50/p95 (ms, client side), mean batch size (the
server's /metrics), and the CPU time a request costs in the server's event loop thread,
in its other threads (the model's worker, the request-log writer) and in the client
(CPU time, unlike wall time, stays comparable on a machine others load); the load
average; and the batching/one-at-a-time throughput ratio. The client is aiohttp, in
this process (it shares the cores with the server: its CPU a request is printed).
Goals: 0 errors in both modes, batching >= 3x one at a time and >= 250 requests/s.
Exits 1 when a goal is missed.

    python bench/serve_load.py [--n 2000] [--concurrency 32] [--candidate zero-shot]
                               [--project DIR] [--mode batching|one-at-a-time]
                               [--precision fp32|bf16|auto]

Results: bench/results/serve_load.json (fp32), serve_load_PRECISION.json (the others).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "serve_load.json"


def adaptlab(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adaptlab", *args], check=True, text=True, capture_output=True, **kw
    )


def make_project(folder: Path, candidate: str) -> Path:
    """The bundled example, run with ``candidate`` only."""
    root = folder / "tickets"
    adaptlab("init", str(root), "--example", "support-tickets")
    adaptlab("run", "-p", str(root), "-c", candidate)
    return root


def dump(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def inputs(project: Path, n: int) -> list[str]:
    """``n`` distinct tickets: the project's texts, numbered so none repeats."""
    texts = [json.loads(line)["text"] for line in (project / "data/tickets.jsonl").open()]
    return [f"{texts[i % len(texts)]} (#{i})" for i in range(n)]


#: One answer: (label, score).
Answer = tuple[str, float]


def expected(
    project: Path, candidate: str, texts: list[str], folder: Path, precision: str
) -> list[Answer]:
    """``adaptlab predict --precision PRECISION``'s answer to each text."""
    src = folder / "inputs.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    out = folder / f"expected-{precision}.jsonl"
    adaptlab(
        "predict", "-p", str(project), "-c", candidate, "--precision", precision, str(src),
        "-o", str(out),
    )  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return [(r["label"], r["score"]) for r in rows]


def agreement(got: Sequence[Answer | None], want: Sequence[Answer]) -> dict[str, Any]:
    """How far ``got`` is from ``want``, over the answers ``got`` has: label differences,
    the largest absolute score difference."""
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if g is not None]
    return {
        "compared": len(pairs),
        "label_differences": sum(g[0] != w[0] for g, w in pairs),
        "max_score_difference": max((abs(g[1] - w[1]) for g, w in pairs), default=None),
    }


def padded_tokens(tokenizer: Any, texts: list[str], batch: int, sub: int, limit: int) -> int:
    """Tokens (padding included) of ``texts`` in consecutive batches of ``batch``, each
    split into sub-batches of ``sub`` after sorting it by length, as
    ``SentenceTransformer.encode(batch_size=sub)`` runs a call; ``limit``: the encoder's
    max_seq_length."""
    lengths = [min(len(ids), limit) for ids in tokenizer(texts)["input_ids"]]
    total = 0
    for start in range(0, len(lengths), batch):
        part = sorted(lengths[start : start + batch], reverse=True)
        total += sum(len(part[i : i + sub]) * part[i] for i in range(0, len(part), sub))
    return total


def model_alone(project: Path, candidate: str, texts: list[str], seconds: float = 10.0) -> None:
    """Print (JSON) texts/s and CPU ms a text of the served model itself, no server, loaded
    as ``adaptlab serve`` loads it: fp32 batches of 1 and of 32, bf16 batches of 32, and
    batches of 32 in one forward pass (fp32, bf16), in turns for ``seconds``; with the
    padded tokens of the batches of 32 both ways. The ceiling of each mode's throughput;
    run in its own process (python -c), so that the bench's client carries no torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as adaptlab serve sets it
    from adaptlab.backends.sentence_transformers import bf16_supported
    from adaptlab.engine.artifact import open_candidate
    from adaptlab.engine.project import Project

    project_ = Project.load(project)
    fp32 = open_candidate(project_, candidate)
    bf16 = open_candidate(project_, candidate, precision="bf16")
    whole = {  # one forward pass a call of 32, padded to the longest
        p: open_candidate(project_, candidate, precision=p) for p in ("fp32", "bf16")
    }
    for model in whole.values():
        assert model.strategy.ctx.backend is not None, f"{candidate} has no encoder"
        model.strategy.ctx.backend.batch_size = 64
    backend: Any = fp32.strategy.ctx.backend
    runs = {  # name -> (model, texts a call)
        "batch_1": (fp32, 1),
        "batch_32": (fp32, 32),
        "bf16_batch_32": (bf16, 32),
        "batch_32_one_pass": (whole["fp32"], 32),
        "bf16_batch_32_one_pass": (whole["bf16"], 32),
    }
    for model, size in runs.values():
        model.predict(texts[:size])
    done = {name: [0, 0.0, 0.0] for name in runs}  # name -> texts, wall s, CPU s
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        for name, (model, size) in runs.items():
            batch = [texts[(i + j) % len(texts)] for j in range(size)]
            i += size
            t0, c0 = time.perf_counter(), time.process_time()
            model.predict(batch)
            acc = done[name]
            acc[0] += size
            acc[1] += time.perf_counter() - t0
            acc[2] += time.process_time() - c0
    out: dict[str, Any] = {
        name: {"texts_per_s": n / wall, "cpu_ms_per_text": 1000 * cpu / n}
        for name, (n, wall, cpu) in done.items()
    }
    tokenizer, limit = backend.model.tokenizer, backend.options.max_seq_length
    out["encoder_batch"] = backend.batch_size
    out["padded_tokens_batch_32_one_pass"] = padded_tokens(tokenizer, texts, 32, 32, limit)
    out["padded_tokens_batch_32"] = padded_tokens(tokenizer, texts, 32, backend.batch_size, limit)
    out["real_tokens"] = padded_tokens(tokenizer, texts, 1, 1, limit)
    out["bf16_native"] = bf16_supported(backend.device)
    print(json.dumps(out))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(
    project: Path, candidate: str, max_batch: int, precision: str, log: Path
) -> tuple[Any, str]:
    import httpx2

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adaptlab", "serve", "-p", str(project), "--candidate",
             candidate, "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", "5",
             "--precision", precision],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"adaptlab serve exited:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            time.sleep(0.2)
    sys.exit("adaptlab serve did not start")


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of process ``pid`` so far: (its main thread, which runs the event
    loop; all its other threads: the model's worker, the request-log writer, ...)."""
    import psutil  # type: ignore[import-untyped]

    main_s = other_s = 0.0
    for t in psutil.Process(pid).threads():
        if t.id == pid:
            main_s += t.user_time + t.system_time
        else:
            other_s += t.user_time + t.system_time
    return main_s, other_s


async def load(
    url: str, key: str, texts: list[str], want: list[Answer], conc: int, pid: int
) -> tuple[dict[str, Any], list[Answer | None]]:
    """``texts`` sent by ``conc`` workers over keep-alive connections (aiohttp), each
    answer's label checked against ``want``; ``pid``: the server's process, for its CPU
    time. Returns the figures and each text's answer (None for a failed request)."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    answers: list[Answer | None] = [None] * len(texts)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(texts)):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=conc)
    timeout = aiohttp.ClientTimeout(total=60)
    endpoint = f"{url}/v1/chat/completions"
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as c:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"model": "default", "messages": [{"role": "user", "content": texts[i]}]}
                t0 = time.perf_counter()
                try:
                    async with c.post(endpoint, json=body) as r:
                        status = r.status
                        got = await r.json() if status == 200 else None
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(f"{i}: {type(exc).__name__}")
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                if got is None:
                    errors.append(f"{i}: HTTP {status}")
                    continue
                answer = answers[i] = (
                    got["choices"][0]["message"]["content"],
                    got["adaptlab"]["score"],
                )
                if answer[0] != want[i][0]:
                    errors.append(f"{i}: label differs from adaptlab predict")

        async def post(body: dict[str, Any]) -> None:
            async with c.post(endpoint, json=body) as r:
                await r.read()

        # A short warm-up outside the measurement (first forward passes allocate).
        warm = {"model": "default", "messages": [{"role": "user", "content": "warm up"}]}
        await asyncio.gather(*(post(warm) for _ in range(conc)))
        server_before = thread_cpu(pid)
        client_before = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - start
        client_s = time.process_time() - client_before
        server_after = thread_cpu(pid)
        async with c.get(f"{url}/metrics") as r:
            metrics = await r.text()
    lat = sorted(latencies)
    count = float(re.search(r"adaptlab_batch_size_count\{[^}]*\} (\S+)", metrics).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"adaptlab_batch_size_sum\{[^}]*\} (\S+)", metrics).group(1))  # type: ignore[union-attr]
    n = len(texts)
    figures = {
        "requests": n,
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": wall,
        "throughput_rps": n / wall,
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "p95_ms": lat[int(len(lat) * 0.95)] if lat else None,
        "mean_batch": total / count if count else None,
        # CPU per request: where the time goes (comparable under load, unlike wall time)
        "server_loop_cpu_ms": 1000 * (server_after[0] - server_before[0]) / n,
        "server_other_cpu_ms": 1000 * (server_after[1] - server_before[1]) / n,
        "client_cpu_ms": 1000 * client_s / n,
    }
    return figures, answers


MODES = {"batching": 32, "one-at-a-time": 1}
GOAL_RATIO = 3.0  # dynamic batching / one at a time, same run
GOAL_RPS = 250.0  # requests/s with dynamic batching


def print_alone(alone: dict[str, Any]) -> None:
    b1, b32, bf = (alone[k] for k in ("batch_1", "batch_32", "bf16_batch_32"))
    one, bf_one = alone["batch_32_one_pass"], alone["bf16_batch_32_one_pass"]
    native = "native" if alone["bf16_native"] else "emulated: no AMX/AVX512_BF16"
    sub = alone["encoder_batch"]
    print(
        f"   model alone: fp32 {b32['texts_per_s']:.0f} texts/s in batches of 32, "
        f"{b1['texts_per_s']:.0f} one at a time ({b32['texts_per_s'] / b1['texts_per_s']:.2f}x); "
        f"bf16 ({native}) {bf['texts_per_s']:.0f} in batches of 32 "
        f"({bf['texts_per_s'] / b1['texts_per_s']:.2f}x fp32 one at a time); no server\n"
        f"{'':>16}a batch of 32 runs sorted by length in passes of {sub}; in one pass: fp32 "
        f"{one['texts_per_s']:.0f}, bf16 {bf_one['texts_per_s']:.0f} texts/s; tokens with "
        f"padding {alone['padded_tokens_batch_32']} vs {alone['padded_tokens_batch_32_one_pass']} "
        f"in one pass, {alone['real_tokens']} without\n"
        f"{'':>16}CPU ms a text: fp32 {b32['cpu_ms_per_text']:.2f} (32), "
        f"{b1['cpu_ms_per_text']:.2f} (1), {one['cpu_ms_per_text']:.2f} (32 in one pass); "
        f"bf16 {bf['cpu_ms_per_text']:.2f} (32), {bf_one['cpu_ms_per_text']:.2f} (one pass)"
    )


def print_agreement(what: str, a: dict[str, Any]) -> None:
    diff = a["max_score_difference"]
    print(
        f"{'':>16}{what}: {a['label_differences']} of {a['compared']} labels differ, "
        f"largest score difference {'-' if diff is None else f'{diff:.2g}'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--candidate", default="zero-shot")
    parser.add_argument("--project", type=Path, default=None)
    parser.add_argument(
        "--mode", action="append", choices=sorted(MODES), help="only these modes (repeatable)"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "auto"),
        help="passed to adaptlab serve and adaptlab predict (default fp32)",
    )
    args = parser.parse_args()
    modes = {m: b for m, b in MODES.items() if not args.mode or m in args.mode}
    work = Path(tempfile.mkdtemp(prefix="adaptlab-serve-bench-"))
    try:
        project = args.project or make_project(work, args.candidate)
        texts = inputs(project, args.n)
        print(
            f"{args.n} requests at concurrency {args.concurrency} to '{args.candidate}', "
            f"--precision {args.precision}"
        )
        want = expected(project, args.candidate, texts, work, args.precision)
        fp32 = (
            want
            if args.precision == "fp32"
            else expected(project, args.candidate, texts, work, "fp32")
        )
        results: dict[str, Any] = {}
        if args.precision != "fp32":
            results["predict vs fp32 predict"] = agreement(want, fp32)
            print_agreement(
                f"predict {args.precision} vs predict fp32", results["predict vs fp32 predict"]
            )
        key = adaptlab(
            "keys", "add", f"bench-{os.getpid()}-{time.time_ns()}", "-p", str(project)
        ).stdout.strip()
        load_before = os.getloadavg()
        alone = json.loads(
            subprocess.run(
                [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                 "import serve_load as s, json; s.model_alone(s.Path(sys.argv[2]), sys.argv[3], "
                 "json.load(open(sys.argv[4])))", str(BENCH), str(project), args.candidate,
                 str(dump(work / "texts.json", texts))],
                check=True, text=True, capture_output=True,
            ).stdout.splitlines()[-1]
        )  # fmt: skip
        results["model alone"] = alone
        print_alone(alone)
        for mode, max_batch in modes.items():
            proc, url = start(
                project, args.candidate, max_batch, args.precision, work / f"{mode}.log"
            )
            try:
                r, answers = asyncio.run(load(url, key, texts, want, args.concurrency, proc.pid))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            r["vs predict"] = agreement(answers, want)
            if args.precision != "fp32":
                r["vs fp32 predict"] = agreement(answers, fp32)
            results[mode] = r
            print(
                f"{mode:>14}: {r['errors']} errors, {r['throughput_rps']:.0f} requests/s, "
                f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
                f"mean batch {r['mean_batch']:.1f} ({r['seconds']:.1f} s); CPU ms a request: "
                f"event loop {r['server_loop_cpu_ms']:.2f}, model and log threads "
                f"{r['server_other_cpu_ms']:.2f}, client {r['client_cpu_ms']:.2f}"
            )
            print_agreement(f"served vs predict {args.precision}", r["vs predict"])
            if "vs fp32 predict" in r:
                print_agreement("served vs predict fp32", r["vs fp32 predict"])
            if r["first_errors"]:
                print(f"{'':>14}  first errors: {'; '.join(r['first_errors'])}")
        load_after = os.getloadavg()
        print(
            f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
            f"on {os.cpu_count()} cores"
        )
        ok = all(results[m]["errors"] == 0 for m in modes)
        ratio = None
        if len(modes) == len(MODES):
            ratio = (
                results["batching"]["throughput_rps"] / results["one-at-a-time"]["throughput_rps"]
            )
            rps = results["batching"]["throughput_rps"]
            bf16 = args.precision == "bf16" or (args.precision == "auto" and alone["bf16_native"])
            ceiling = alone["bf16_batch_32" if bf16 else "batch_32"]
            # one at a time is a batch of 1: the encoder's fp32 short path at any precision
            what = (
                ""
                if args.precision == "fp32"
                else f" ({args.precision} batches vs fp32 single inputs)"
            )
            print(
                f"throughput with dynamic batching / one at a time: {ratio:.2f}x{what} (same "
                f"run; goal {GOAL_RATIO:g}x), {rps:.0f} requests/s (goal {GOAL_RPS:g}); the "
                f"server gives {rps / ceiling['texts_per_s']:.0%} of the model's own "
                f"batch-32 throughput at {args.precision}"
            )
            ok = ok and ratio >= GOAL_RATIO and rps >= GOAL_RPS
        RESULTS.parent.mkdir(exist_ok=True)
        out = (
            RESULTS
            if args.precision == "fp32"
            else RESULTS.with_name(f"{RESULTS.stem}_{args.precision}.json")
        )
        out.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "concurrency": args.concurrency,
                    "candidate": args.candidate,
                    "precision": args.precision,
                    "client": "aiohttp",
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "load_average_1min": [load_before[0], load_after[0]],
                    "results": results,
                    "throughput_ratio": ratio,
                    "goals_met": ok,
                },
                indent=2,
            )
        )
        if not ok:
            print(
                "goal missed: every request must succeed with the predicted label, at "
                f"{GOAL_RATIO:g}x one at a time and {GOAL_RPS:g} requests/s"
            )
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
