"""``--precision`` of ``adaptlab predict`` and ``adaptlab serve``: the value reaches the
loaded encoder, a bad value is refused naming the choices, and the two commands give
the same answers at the same precision (the server's batch of 8 is predict's batch of
8, so even bf16, whose digits depend on the batch, must agree)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.serve.conftest import start_server

pytestmark = pytest.mark.timeout(300)


def _texts(project: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in (project / "data/tickets.jsonl").open(encoding="utf-8")]
    return [f"{rows[i % len(rows)]['text']} (#{i})" for i in range(n)]


def _predict(cli: Callable[..., Any], project: Path, texts: list[str], *args: str) -> list[Any]:
    """``adaptlab predict -c zero-shot ARGS`` of ``texts``: its JSON lines, read."""
    src = project.parent / "precision-inputs.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    result = cli("predict", "-p", project, "-c", "zero-shot", *args, src)
    result.ok()
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_predict_precision_reaches_the_loaded_encoder(
    precision: str,
    quick_project: Path,
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adaptlab.backends.sentence_transformers import bf16_supported
    from adaptlab.engine import artifact

    loaded: list[Any] = []
    original = artifact.load_model

    def recording(*args: Any, **kw: Any) -> Any:
        model = original(*args, **kw)
        loaded.append(model.strategy.ctx.backend)
        return model

    monkeypatch.setattr(artifact, "load_model", recording)
    answers = _predict(cli, quick_project, _texts(quick_project, 6), "--precision", precision)
    assert len(answers) == 6
    backend = loaded[-1]  # the model that answered (an export's check may load one first)
    assert backend.options.precision == precision
    want = {"fp32": False, "bf16": True, "auto": bf16_supported(backend.device)}[precision]
    assert backend.use_bf16 is want
    assert backend.describe()["precision"] == ("bf16" if want else "fp32")


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_bad_precision_is_refused_naming_the_choices(
    command: str, quick_project: Path, cli: Callable[..., Any]
) -> None:
    args = ["-c", "zero-shot", "--precision", "fp16"]
    result = cli(command, "-p", quick_project, *args, *(["-"] if command == "predict" else []))
    assert result.code == 2, result.text
    assert "--precision" in result.text and "'fp16'" in result.text, result.text
    for choice in ("fp32", "bf16", "auto"):
        assert choice in result.text, result.text


def _served(url: str, texts: list[str]) -> list[dict[str, Any]]:
    """``texts`` sent at once (one batch of ``len(texts)`` on the server) to /v1/predict."""
    with httpx2.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(len(texts)) as pool:
        replies = list(pool.map(lambda t: client.post("/v1/predict", json={"input": t}), texts))
    for r in replies:
        assert r.status_code == 200, r.text
    return [r.json() for r in replies]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_serve_and_predict_agree_at_the_same_precision(
    precision: str, quick_project: Path, cli: Callable[..., Any]
) -> None:
    texts = _texts(quick_project, 8)
    served = start_server(
        quick_project,
        "--candidate", "zero-shot", "--no-auth", "--precision", precision,
        "--max-batch", "8", "--max-wait-ms", "5000",
    )  # fmt: skip
    try:
        got = _served(served.url, texts)
    finally:
        log = served.stop()
    assert f"zero-shot: encoder precision {precision} (--precision {precision}" in log, log
    want = _predict(cli, quick_project, texts, "--precision", precision, "--batch-size", "8")
    for text, g, w in zip(texts, got, want, strict=True):
        assert g["label"] == w["label"], text
        assert g["score"] == pytest.approx(w["score"], abs=1e-5), text
    if precision == "bf16":  # and it was bf16: fp32's scores differ from it
        fp32 = _predict(cli, quick_project, texts, "--batch-size", "8")
        assert max(abs(g["score"] - f["score"]) for g, f in zip(got, fp32, strict=True)) > 1e-5
