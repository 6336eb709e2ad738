"""``adaptlab serve`` as a real process on 127.0.0.1, called with the official ``openai``
client: every kind of candidate answers as ``adaptlab predict`` does."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openai import APIStatusError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.serve.conftest import add_key, free_port, start_server

pytestmark = pytest.mark.slow

KINDS = {"enc": "finetune", "gen": "chat-few-shot", "lora": "lora", "few": "few-shot"}


@pytest.fixture(scope="module")
def exported(served_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``adaptlab export --candidate`` of each kind, into folders outside the project."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("exports")
    folders = {}
    for name, cand in KINDS.items():
        result = run_cli("export", "-p", str(served_project), "--candidate", cand, str(out / name))
        assert result.exit_code == 0, result.output
        folders[name] = out / name
    return folders


def _inputs(project: Path, n: int) -> list[str]:
    from adaptlab import Project

    return [ex.text for ex in Project.load(project).split().test[:n]]


def _predict(folder: Path, texts: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    from tests.conftest import run_cli

    src = tmp_path / f"{folder.name}-in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    dst = tmp_path / f"{folder.name}-out.jsonl"
    result = run_cli("predict", "--model", str(folder), str(src), "-o", str(dst))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in dst.read_text().splitlines()]


def test_exports_reproduce_the_runs_answers_and_carry_a_model_card(
    exported: dict[str, Path], served_project: Path
) -> None:
    from adaptlab import Project, summarize_project

    summary = summarize_project(Project.load(served_project))
    for name, folder in exported.items():
        manifest = json.loads((folder / "adaptlab-model.json").read_text())
        assert manifest["candidate"] == KINDS[name]
        assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))
        card = (folder / "MODEL_CARD.md").read_text()
        c = summary.candidate(KINDS[name])
        assert f"{100 * c.quality:.1f}%" in card  # the measured test figure
        if not manifest["generative"]:
            same, n = manifest["figures"]["reproduced_test_answers"]
            assert same == n == c.n, (name, same, n)
    lora = json.loads((exported["lora"] / "adaptlab-model.json").read_text())
    assert (exported["lora"] / "adapter" / "adapter_model.safetensors").is_file()
    assert lora["llm_folders"] == {"adapter": "adapter"}
    assert "api_key" not in json.dumps(lora["llm"]) or lora["llm"].get("api_key_env") is None
    gen = json.loads((exported["gen"] / "adaptlab-model.json").read_text())
    assert len(gen["state"]["fixed"]) == 2 and gen["template"]["version"]
    assert (exported["gen"] / gen["template"]["file"]).is_file()


def test_openai_client_plain_and_streamed_equal_predict_for_every_kind(
    exported: dict[str, Path], served_project: Path, tmp_path: Path
) -> None:
    texts = _inputs(served_project, 12)
    expected = {name: _predict(folder, texts, tmp_path) for name, folder in exported.items()}
    key = add_key(served_project, "clients")
    args = [arg for name, folder in exported.items() for arg in ("--model", f"{name}={folder}")]
    server = start_server(served_project, *args, "--max-wait-ms", "20")
    try:
        client = OpenAI(base_url=server.v1, api_key=key, max_retries=0)
        assert {m.id for m in client.models.list()} >= set(KINDS) | {"default"}

        def ask(job: tuple[str, int]) -> tuple[str, int, Any, Any, Any]:
            name, i = job
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": texts[i]}]
            raw = client.chat.completions.with_raw_response.create(model=name, messages=messages)
            stream = client.chat.completions.create(model=name, messages=messages, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            answer = httpx2.post(
                f"{server.v1}/predict",
                json={"input": texts[i], "model": name},
                headers={"Authorization": f"Bearer {key}"},
            )
            return name, i, raw, streamed, answer

        jobs = [(name, i) for name in exported for i in range(len(texts))]
        with ThreadPoolExecutor(8) as pool:  # concurrent: the batcher groups them
            results = list(pool.map(ask, jobs))
        for name, i, raw, streamed, answer in results:
            want = expected[name][i]
            completion = raw.parse()
            assert raw.headers["x-adaptlab-candidate"] == name
            assert raw.headers["x-request-id"] == completion.id
            assert completion.model == name
            content = completion.choices[0].message.content
            assert content == (want["label"] or ""), (name, i, content, want)
            assert streamed == content
            got = answer.json()
            assert answer.status_code == 200 and got["label"] == want["label"]
            # A local LLM's constrained score is a softmax over label likelihoods computed
            # in packed float32 rows (the project's tiny LLM is set to fp32): the padding
            # of the batch it shared moves it only by rounding.
            assert got["score"] == pytest.approx(want["score"], abs=1e-4), name
            if name == "gen":
                assert got["raw"] == want["raw"] and got["status"] == want["status"]
            if name == "lora":  # the scored labels: the same choice, likelihoods as above
                served, predicted = json.loads(got["raw"]), json.loads(want["raw"])
                assert got["status"] == want["status"] == "constrained"
                assert served["tokens"] == predicted["tokens"]
                assert served["logprobs"] == pytest.approx(predicted["logprobs"], abs=1e-3)
        # The chat model got its template and shots: the client sent only the ticket.
        metrics = httpx2.get(f"{server.url}/metrics").text
        assert (
            'adaptlab_requests_total{candidate="enc",endpoint="chat",status="200"} 24.0' in metrics
        )
        assert "adaptlab_batch_size_bucket" in metrics
    finally:
        out = server.stop()
    assert key not in out
    # One log line an answer, adaptlab's own; uvicorn's access log is off by default.
    assert "chat -> enc" in out and '"POST /v1/chat/completions HTTP/1.1" 200' not in out


def test_vllm_export_and_a_remote_server_behind_a_route(
    exported: dict[str, Path], served_project: Path, tmp_path: Path
) -> None:
    from tests.conftest import run_cli
    from tests.fakes.fake_llm import ChatCall, FakeLLMServer

    out = tmp_path / "vllm"
    result = run_cli(
        "export", "-p", str(served_project), "--candidate", "lora", "--format", "vllm", str(out)
    )
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "vllm.json").read_text())
    assert spec["model_name"] == "lora" and spec["command"][:2] == ["vllm", "serve"]
    assert "--enable-lora" in spec["command"]
    assert f"lora={out.resolve() / 'adapter'}" in spec["command"]
    assert "--remote lora=" in (out / "VLLM.md").read_text()
    refused = run_cli(
        "export",
        "-p",
        str(served_project),
        "--candidate",
        "finetune",
        "--format",
        "vllm",
        str(tmp_path / "no"),
    )
    assert refused.exit_code == 2 and "llm-finetune" in refused.output
    assert not (tmp_path / "no").exists()

    # A stand-in for vLLM: it answers every prompt with 'refund' and records the calls.
    with FakeLLMServer(lambda call: "refund") as remote:
        key = add_key(served_project, "remote-test")
        server = start_server(
            served_project,
            "--model", f"gen={exported['gen']}",
            "--remote", f"gen={remote.base_url}@lora-module",
            "--remote", f"echo={remote.base_url}@raw-model",
            "--remote", f"dead=http://127.0.0.1:{free_port()}/v1@m",
        )  # fmt: skip
        try:
            client = OpenAI(base_url=server.v1, api_key=key, max_retries=0)
            text = "my parcel never arrived"
            gen = client.chat.completions.create(
                model="gen", messages=[{"role": "user", "content": text}]
            )
            echo = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}]
            )
            with pytest.raises(APIStatusError) as dead:
                client.chat.completions.create(
                    model="dead", messages=[{"role": "user", "content": text}]
                )
        finally:
            log = server.stop()
        # A remote that does not answer: 502, the reason in the server's log, no run hints.
        assert dead.value.status_code == 502 and "did not answer" in str(dead.value)
        assert "-> dead failed" in log and "rerun" not in str(dead.value)
        calls: list[ChatCall] = remote.calls
    assert (
        gen.choices[0].message.content == "refund" and echo.choices[0].message.content == "refund"
    )
    by_model = {c.model: c for c in calls}
    # The candidate's template and shots were rendered here; the pass-through sent the input.
    assert by_model["lora-module"].user_text.count("<example>") == 2
    assert text in by_model["lora-module"].user_text
    assert by_model["raw-model"].user_text == text
