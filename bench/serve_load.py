"""Load test of ``adaptlab serve`` on loopback: dynamic batching against one request at a time.

Builds the bundled support-tickets project (or takes ``--project``), runs the encoder
candidate (default ``zero-shot``: one MiniLM forward pass per input, the same cost as
the fine-tuned encoder), then starts ``adaptlab serve`` twice as a real process on
127.0.0.1 — once with dynamic batching (``--max-batch 32``), once serving one request at
a time (``--max-batch 1``) — and sends each N requests (distinct tickets) at a fixed
concurrency through ``POST /v1/chat/completions`` with an API key. Every answer is
checked against ``adaptlab predict`` for the same input; a wrong answer or a non-200
is an error.

First it times the model alone, in its own process without a server (batches of 32
and of 1, in turns): the ceiling of each mode. Then prints, for each mode: errors,
throughput (requests/s), latency p50/p95 (ms, client side), mean batch size (the
server's /metrics), and the CPU time a request costs in the server's event loop
thread, in its other threads (the model's worker, the request-log writer) and in the
client (CPU time, unlike wall time, stays comparable on a machine others load); the
load average; and the batching/one-at-a-time throughput ratio. The client is aiohttp,
in this process (it shares the cores with the server: its CPU a request is printed).
Goals: 0 errors in both modes, batching >= 3x one at a time and >= 250 requests/s.
Exits 1 when a goal is missed.

    python bench/serve_load.py [--n 2000] [--concurrency 32] [--candidate zero-shot]
                               [--project DIR] [--mode batching|one-at-a-time]

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


def dump(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


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


def model_alone(project: Path, candidate: str, texts: list[str], seconds: float = 8.0) -> None:
    """Print (JSON) texts/s of the served model itself, no server: batches of 1 and of 32
    in turns for ``seconds``, loaded as ``adaptlab serve`` loads it (fp32 encoder). The
    ceiling of each mode's throughput; run in its own process (python -c), so that the
    bench's client carries no torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as adaptlab serve sets it
    from adaptlab.engine.artifact import open_candidate
    from adaptlab.engine.project import Project

    model = open_candidate(Project.load(project), candidate)
    model.predict(texts[:32])
    model.predict(texts[:1])
    done = {1: [0, 0.0, 0.0], 32: [0, 0.0, 0.0]}  # size -> texts, wall s, CPU s
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        for size, acc in done.items():
            batch = [texts[(i + j) % len(texts)] for j in range(size)]
            i += size
            t0, c0 = time.perf_counter(), time.process_time()
            model.predict(batch)
            acc[0] += size
            acc[1] += time.perf_counter() - t0
            acc[2] += time.process_time() - c0
    print(
        json.dumps(
            {
                f"batch_{size}": {"texts_per_s": n / wall, "cpu_ms_per_text": 1000 * cpu / n}
                for size, (n, wall, cpu) in done.items()
            }
        )
    )


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
    url: str, key: str, texts: list[str], want: list[str], conc: int, pid: int
) -> dict[str, Any]:
    """``texts`` sent by ``conc`` workers over keep-alive connections (aiohttp), each
    answer checked against ``want``; ``pid``: the server's process, for its CPU time."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
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
                elif got["choices"][0]["message"]["content"] != want[i]:
                    errors.append(f"{i}: answer differs from adaptlab predict")

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
    return {
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


MODES = {"batching": 32, "one-at-a-time": 1}
GOAL_RATIO = 3.0  # dynamic batching / one at a time, same run
GOAL_RPS = 250.0  # requests/s with dynamic batching


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--candidate", default="zero-shot")
    parser.add_argument("--project", type=Path, default=None)
    parser.add_argument(
        "--mode", action="append", choices=sorted(MODES), help="only these modes (repeatable)"
    )
    args = parser.parse_args()
    modes = {m: b for m, b in MODES.items() if not args.mode or m in args.mode}
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
        print(
            f"   model alone: {alone['batch_32']['texts_per_s']:.0f} texts/s in batches of 32, "
            f"{alone['batch_1']['texts_per_s']:.0f} one at a time "
            f"({alone['batch_32']['texts_per_s'] / alone['batch_1']['texts_per_s']:.2f}x; no "
            f"server; CPU ms a text {alone['batch_32']['cpu_ms_per_text']:.2f} and "
            f"{alone['batch_1']['cpu_ms_per_text']:.2f})"
        )
        for mode, max_batch in modes.items():
            proc, url = start(project, args.candidate, max_batch, work / f"{mode}.log")
            try:
                results[mode] = asyncio.run(load(url, key, texts, want, args.concurrency, proc.pid))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            r = results[mode]
            print(
                f"{mode:>14}: {r['errors']} errors, {r['throughput_rps']:.0f} requests/s, "
                f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
                f"mean batch {r['mean_batch']:.1f} ({r['seconds']:.1f} s); CPU ms a request: "
                f"event loop {r['server_loop_cpu_ms']:.2f}, model and log threads "
                f"{r['server_other_cpu_ms']:.2f}, client {r['client_cpu_ms']:.2f}"
            )
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
            print(
                f"throughput with dynamic batching / one at a time: {ratio:.2f}x (same run; "
                f"goal {GOAL_RATIO:g}x), {rps:.0f} requests/s (goal {GOAL_RPS:g}); the server "
                f"gives {rps / alone['batch_32']['texts_per_s']:.0%} of the model's own "
                "batch-32 throughput"
            )
            ok = ok and ratio >= GOAL_RATIO and rps >= GOAL_RPS
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "concurrency": args.concurrency,
                    "candidate": args.candidate,
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
                "goal missed: every request must succeed with the predicted answer, at "
                f"{GOAL_RATIO:g}x one at a time and {GOAL_RPS:g} requests/s"
            )
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
