"""adaptlab's LLM runner against promptfoo: same prompts, same local server, same concurrency.

Starts the fake OpenAI-compatible server (``tests.fakes.fake_llm``) as its own
process with a fixed latency, sends it N distinct chat prompts through
``LLMRunner.run_sync`` (no cache), then through ``promptfoo eval`` (no cache, no
database writes), and checks that every answer is the one the server gives that
prompt. Goals: adaptlab within 15 % of the ideal N x latency / concurrency, and at
most 0.8 x promptfoo's own evaluation time. Exits 1 when a goal is missed.

    python bench/llm_throughput.py [--n 1000] [--latency-ms 200] [--concurrency 32]
                                   [--skip-promptfoo]

promptfoo is installed on first use into bench/.promptfoo/ (needs npm; skipped with a
message where npm is missing). Results: bench/results/llm_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# The newest promptfoo that still runs on Node 20 (0.122 and later need Node >= 22.22).
PROMPTFOO_VERSION = "0.121.20"
BENCH = Path(__file__).resolve().parent
PROMPTFOO_DIR = BENCH / ".promptfoo"
PROMPTFOO_BIN = PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo"
RESULTS = BENCH / "results" / "llm_throughput.json"
IDEAL_SLACK = 1.15
PROMPTFOO_RATIO_GOAL = 0.8

SYSTEM = "You label customer support tickets with one category word."
TICKETS = (
    "my card was charged twice for the same order",
    "the app logs me out every time I open settings",
    "how do I change the email address on my account",
    "a refund was promised two weeks ago and never arrived",
    "the delivery tracking page shows an error since Monday",
)
# Nothing here may leave the machine: promptfoo's telemetry, update check, sharing and
# remote generation are off, and both clients reach the local server without a proxy.
PROMPTFOO_ENV = {
    "OPENAI_API_KEY": "sk-bench-placeholder",
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_DISABLE_SHARING": "1",
    "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
    "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1",
    "PROMPTFOO_DISABLE_SHARE_EMAIL_REQUEST": "1",
    "PROMPTFOO_CACHE_ENABLED": "false",
    "PROMPTFOO_DISABLE_DEBUG_LOG": "1",
    "NO_COLOR": "1",
}


def user_text(i: int) -> str:
    return f"Classify ticket #{i}: {TICKETS[i % len(TICKETS)]}"


def expected_answer(user: str) -> str:
    # The fake server's default responder: "ok:" and the first five words of the prompt.
    return " ".join(["ok:", *user.split()[:5]])


def expected_prompt_tokens(user: str) -> int:
    # The fake server counts words + 3 per message: a match shows the system message
    # arrived too, so both clients sent the same two messages.
    return len(SYSTEM.split()) + 3 + len(user.split()) + 3


# ------------------------------------------------------------------ the server


def start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "tests.fakes.fake_llm", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=BENCH.parent,  # the server is a test helper: tests/fakes, not the package
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the fake server did not print its URL (got {url!r})")
    return proc, url


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def arrivals(base_url: str) -> int | None:
    """How many chat requests the server has received so far, or None if it cannot say.

    The server numbers its answers by arrival (``chatcmpl-fake-<index>``), so one probe
    request answered with index k means k requests came before it.
    """
    body = {"model": "probe", "messages": [{"role": "user", "content": "probe"}]}
    req = urllib.request.Request(
        base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer probe"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.load(resp)
    match = re.fullmatch(r"chatcmpl-fake-(\d+)", str(answer.get("id", "")))
    return int(match.group(1)) if match else None


def received(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before - 1  # minus the probe


# ------------------------------------------------------------------ adaptlab


def run_adaptlab(base_url: str, users: list[str], concurrency: int) -> dict[str, Any]:
    from adaptlab.backends import load_llm
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.config import LLMConfig
    from adaptlab.llm.types import ChatRequest, Message

    requests = [ChatRequest((Message("system", SYSTEM), Message("user", u))) for u in users]
    config = LLMConfig(
        backend="openai", name="gpt-4o-mini", base_url=base_url, max_concurrency=concurrency
    )
    runner = LLMRunner(load_llm(config), cache=None)  # no cache: every prompt is sent
    t0, cpu0 = time.perf_counter(), time.process_time()
    responses = runner.run_sync(requests)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    wrong = [
        i
        for i, (u, r) in enumerate(zip(users, responses, strict=True))
        if r.text != expected_answer(u) or r.usage.input_tokens != expected_prompt_tokens(u)
    ]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,  # this process's CPU: the client's cost per request
        "answers": len(responses),
        "wrong": len(wrong),
        "first_wrong": wrong[:5],
        "sent": runner.stats.sent,
        "retries": runner.stats.retries,
    }


# ------------------------------------------------------------------ promptfoo


def installed_promptfoo() -> str | None:
    manifest = PROMPTFOO_DIR / "node_modules" / "promptfoo" / "package.json"
    if not (manifest.is_file() and PROMPTFOO_BIN.exists()):
        return None
    return str(json.loads(manifest.read_text())["version"])


def ensure_promptfoo() -> str | None:
    """Path of the pinned promptfoo, installing it on first use; None (said why) if npm is
    missing."""
    if installed_promptfoo() == PROMPTFOO_VERSION:
        return str(PROMPTFOO_BIN)
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        print("promptfoo: skipped, npm and node are needed to install it (see nodejs.org)")
        return None
    print(f"installing promptfoo {PROMPTFOO_VERSION} into {PROMPTFOO_DIR} (first use, minutes)")
    cmd = [npm, "install", "--prefix", str(PROMPTFOO_DIR), "--no-audit", "--no-fund"]
    cmd += ["--loglevel=error", f"promptfoo@{PROMPTFOO_VERSION}"]
    subprocess.run(cmd, check=True)
    if installed_promptfoo() != PROMPTFOO_VERSION:
        raise SystemExit(f"npm did not install promptfoo {PROMPTFOO_VERSION} in {PROMPTFOO_DIR}")
    return str(PROMPTFOO_BIN)


def promptfoo_config(base_url: str, users: list[str]) -> dict[str, Any]:
    # A JSON list of messages is promptfoo's chat prompt; {{ user }} is filled per test
    # (and JSON-escaped), so each test renders to the same two messages adaptlab sends.
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "{{ user }}"}]
    return {
        "description": "adaptlab bench/llm_throughput.py",
        "prompts": [{"label": "ticket", "raw": json.dumps(messages)}],
        "providers": [
            {
                "id": "openai:chat:gpt-4o-mini",
                # adaptlab's defaults, so both send the same request body.
                "config": {"apiBaseUrl": base_url, "temperature": 0, "max_tokens": 256},
            }
        ],
        "tests": [{"vars": {"user": u}} for u in users],
        "sharing": False,
    }


def run_promptfoo(binary: str, base_url: str, users: list[str], concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="adaptlab-bench-promptfoo-") as tmp:
        work = Path(tmp)
        config, output, log = work / "promptfooconfig.yaml", work / "out.json", work / "log.txt"
        config.write_text(json.dumps(promptfoo_config(base_url, users)))  # JSON is YAML
        env = {**os.environ, **PROMPTFOO_ENV}
        env["PROMPTFOO_CONFIG_DIR"] = str(work / "home")  # not the user's ~/.promptfoo
        env["PROMPTFOO_CACHE_PATH"] = str(work / "cache")
        cmd = [binary, "eval", "-c", str(config), "-j", str(concurrency), "-o", str(output)]
        # --no-write skips promptfoo's SQLite result store (the adaptlab side keeps no
        # cache either): it is promptfoo's fastest setting, so the ratio is conservative.
        cmd += ["--no-cache", "--no-write", "--no-share", "--no-table", "--no-progress-bar"]
        with log.open("w") as log_file:
            t0 = time.perf_counter()
            proc = subprocess.run(
                cmd,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
            seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not output.is_file():
            tail = log.read_text()[-3000:]
            raise SystemExit(f"promptfoo eval failed (exit {proc.returncode}):\n{tail}")
        report = json.loads(output.read_text())
    results = report["results"]["results"]
    stats = report["results"]["stats"]
    wrong = 0
    for row in results:
        user = row["vars"]["user"]
        response = row.get("response") or {}
        usage = response.get("tokenUsage") or {}
        ok = (
            row.get("success")
            and not response.get("cached")
            and response.get("output") == expected_answer(user)
            and usage.get("prompt") == expected_prompt_tokens(user)
        )
        wrong += not ok
    duration_ms = stats.get("evaluationDurationMs") or stats.get("durationMs")
    return {
        "seconds": seconds,  # the whole command: Node start-up, config, eval, JSON output
        "eval_seconds": duration_ms / 1000 if duration_ms else None,
        "answers": len(results),
        "distinct_prompts": len({row["vars"]["user"] for row in results}),
        "wrong": wrong,
        "successes": stats.get("successes"),
        "errors": stats.get("errors"),
        "version": report.get("metadata", {}).get("promptfooVersion"),
    }


# ------------------------------------------------------------------ main


def node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="distinct prompts")
    ap.add_argument("--latency-ms", type=float, default=200.0, help="server delay per answer")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--skip-promptfoo", action="store_true", help="measure adaptlab only")
    args = ap.parse_args()
    # A proxy in the environment must not sit between the clients and 127.0.0.1.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    n, latency, concurrency = args.n, args.latency_ms / 1000, args.concurrency
    ideal = n * latency / concurrency
    users = [user_text(i) for i in range(n)]
    binary = None if args.skip_promptfoo else ensure_promptfoo()
    load = os.getloadavg()[0]

    server, base_url = start_server(args.latency_ms)
    try:
        k0 = arrivals(base_url)
        ours = run_adaptlab(base_url, users, concurrency)
        k1 = arrivals(base_url)
        ours["server_received"] = received(k0, k1)
        theirs = None
        if binary is not None:
            theirs = run_promptfoo(binary, base_url, users, concurrency)
            theirs["server_received"] = received(k1, arrivals(base_url))
    finally:
        stop_server(server)

    problems = []
    for name, side in (("adaptlab", ours), ("promptfoo", theirs)):
        if side is None:
            continue
        if side["answers"] != n or side["wrong"]:
            problems.append(f"{name}: {side['answers']} answers, {side['wrong']} wrong")
        if side["server_received"] not in (n, None):
            problems.append(f"{name}: the server received {side['server_received']} requests")
    if ours["sent"] != n:
        problems.append(f"adaptlab: {ours['sent']} requests sent for {n} prompts")
    if theirs is not None and theirs["distinct_prompts"] != n:
        problems.append(f"promptfoo: {theirs['distinct_prompts']} distinct prompts, not {n}")

    def count(side: dict[str, Any]) -> str:
        got = side["server_received"]
        return "unknown" if got is None else str(got)

    print(f"N = {n} prompts, latency {args.latency_ms:.0f} ms, concurrency {concurrency}")
    print(f"load average at start: {load:.2f} on {os.cpu_count()} CPUs")
    print(f"ideal (N x latency / concurrency): {ideal:.2f} s")
    print(
        f"adaptlab LLMRunner.run_sync: {ours['seconds']:.2f} s = {ours['seconds'] / ideal:.3f} "
        f"x ideal (goal <= {IDEAL_SLACK}); server received {count(ours)}, "
        f"{ours['answers'] - ours['wrong']}/{n} answers correct"
    )
    cpu = ours["cpu_seconds"]
    print(f"adaptlab client CPU: {cpu:.2f} s, {1000 * cpu / n:.2f} ms a request")
    goals = {"adaptlab_within_15pct_of_ideal": ours["seconds"] <= IDEAL_SLACK * ideal}
    if theirs is not None:
        print(
            f"promptfoo {theirs['version']} eval, whole command (Node start-up included): "
            f"{theirs['seconds']:.2f} s; server received {count(theirs)}, "
            f"{theirs['answers'] - theirs['wrong']}/{n} answers correct"
        )
        vs_command = ours["seconds"] / theirs["seconds"]
        print(f"adaptlab / promptfoo whole command = {vs_command:.3f}")
        fair = theirs["seconds"]
        if theirs["eval_seconds"] is not None:
            fair = theirs["eval_seconds"]
            print(f"promptfoo's own eval duration (no start-up): {fair:.2f} s")
        ratio = ours["seconds"] / fair
        which = "eval duration" if theirs["eval_seconds"] is not None else "whole command"
        print(f"adaptlab / promptfoo {which} = {ratio:.3f} (goal <= {PROMPTFOO_RATIO_GOAL})")
        goals["adaptlab_at_most_0.8x_promptfoo"] = ratio <= PROMPTFOO_RATIO_GOAL
    else:
        print("promptfoo: not measured")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "n": n,
        "latency_ms": args.latency_ms,
        "concurrency": concurrency,
        "ideal_seconds": ideal,
        "adaptlab": ours,
        "promptfoo": theirs,
        "goals": goals,
        "problems": problems,
        "load_average_1min": load,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "node": node_version(),
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    missed = [name for name, met in goals.items() if not met]
    if missed:
        print(f"missed: {', '.join(missed)}")
    if problems or missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
