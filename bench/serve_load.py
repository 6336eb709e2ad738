"""Load test of ``adaptlab serve`` on loopback: dynamic batching against one request at a time.

Builds the bundled support-tickets project (or takes ``--project``), runs the encoder
candidate (default ``zero-shot``: one MiniLM forward pass per input, the same cost as
the fine-tuned encoder), then starts ``adaptlab serve`` twice as a real process on
127.0.0.1 — once with dynamic batching (``--max-batch 32``), once serving one request at
a time (``--max-batch 1``) — and sends each N requests (distinct tickets) at a fixed
concurrency through ``POST /v1/chat/completions`` with an API key. Every answer is
checked against ``adaptlab predict`` for the same input; a wrong answer or a non-200
is an error.

Prints, for each mode: errors, throughput (requests/s), latency p50/p95 (ms, client
side), mean batch size (the server's /metrics); and the batching/one-at-a-time
throughput ratio. Goals: 0 errors in both modes. Exits 1 when a goal is missed.

    python bench/serve_load.py [--n 2000] [--concurrency 32] [--candidate zero-shot]
                               [--project DIR]

Results: bench/results/serve_load.json.
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


def inputs(project: Path, n: int) -> list[str]:
    """``n`` distinct tickets: the project's texts, numbered so none repeats."""
    texts = [json.loads(line)["text"] for line in (project / "data/tickets.jsonl").open()]
    return [f"{texts[i % len(texts)]} (#{i})" for i in range(n)]


def expected(project: Path, candidate: str, texts: list[str], folder: Path) -> list[str]:
    src = folder / "inputs.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    out = folder / "expected.jsonl"
    adaptlab("predict", "-p", str(project), "-c", candidate, str(src), "-o", str(out))
    return [json.loads(line)["label"] for line in out.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(project: Path, candidate: str, max_batch: int, log: Path) -> tuple[Any, str]:
    import httpx2

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adaptlab", "serve", "-p", str(project), "--candidate",
             candidate, "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", "5"],
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


async def load(url: str, key: str, texts: list[str], want: list[str], conc: int) -> dict[str, Any]:
    import httpx2

    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(texts)):
        queue.put_nowait(i)
    limits = httpx2.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"model": "default", "messages": [{"role": "user", "content": texts[i]}]}
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/chat/completions", json=body)
                except httpx2.HTTPError as exc:
                    errors.append(f"{i}: {type(exc).__name__}")
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    errors.append(f"{i}: HTTP {r.status_code}")
                elif r.json()["choices"][0]["message"]["content"] != want[i]:
                    errors.append(f"{i}: answer differs from adaptlab predict")

        # A short warm-up outside the measurement (first forward passes allocate).
        await asyncio.gather(*(c.post("/v1/chat/completions", json={
            "model": "default", "messages": [{"role": "user", "content": "warm up"}]})
            for _ in range(conc)))  # fmt: skip
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - start
        metrics = (await c.get("/metrics")).text
    lat = sorted(latencies)
    count = float(re.search(r"adaptlab_batch_size_count\{[^}]*\} (\S+)", metrics).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"adaptlab_batch_size_sum\{[^}]*\} (\S+)", metrics).group(1))  # type: ignore[union-attr]
    return {
        "requests": len(texts),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": wall,
        "throughput_rps": len(texts) / wall,
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "p95_ms": lat[int(len(lat) * 0.95)] if lat else None,
        "mean_batch": total / count if count else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--candidate", default="zero-shot")
    parser.add_argument("--project", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adaptlab-serve-bench-"))
    try:
        project = args.project or make_project(work, args.candidate)
        texts = inputs(project, args.n)
        print(f"{args.n} requests at concurrency {args.concurrency} to '{args.candidate}'")
        want = expected(project, args.candidate, texts, work)
        key = adaptlab(
            "keys", "add", f"bench-{os.getpid()}-{time.time_ns()}", "-p", str(project)
        ).stdout.strip()
        results: dict[str, Any] = {}
        for mode, max_batch in (("batching", 32), ("one-at-a-time", 1)):
            proc, url = start(project, args.candidate, max_batch, work / f"{mode}.log")
            try:
                results[mode] = asyncio.run(load(url, key, texts, want, args.concurrency))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            r = results[mode]
            print(
                f"{mode:>14}: {r['errors']} errors, {r['throughput_rps']:.0f} requests/s, "
                f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
                f"mean batch {r['mean_batch']:.1f} ({r['seconds']:.1f} s)"
            )
        ratio = results["batching"]["throughput_rps"] / results["one-at-a-time"]["throughput_rps"]
        print(f"throughput with dynamic batching / one at a time: {ratio:.2f}x (same run)")
        ok = all(r["errors"] == 0 for r in results.values())
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "concurrency": args.concurrency,
                    "candidate": args.candidate,
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "results": results,
                    "throughput_ratio": ratio,
                    "goals_met": ok,
                },
                indent=2,
            )
        )
        if not ok:
            print("goal missed: every request must succeed with the predicted answer")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
