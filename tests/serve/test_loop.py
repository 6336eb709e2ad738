"""The loop the request log exists for: serve → feedback → logs export → run → report."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx2
import pytest
import yaml
from openai import OpenAI

from tests.serve.conftest import add_key, start_server

pytestmark = pytest.mark.slow

# New tickets, unlike any in the project's data: live traffic.
TICKETS = {
    "billing": [
        "Why is there a second charge of 19.99 on my statement this month?",
        "The invoice for order NW-88121 shows the wrong VAT number.",
        "My card keeps getting declined at checkout although it has funds.",
        "Can I pay the annual plan by bank transfer instead of card?",
    ],
    "shipping": [
        "The tracking page for my parcel has not moved in six days.",
        "The courier left my package at the wrong house down the street.",
        "Customs is holding my delivery and asking for a fee, what do I do?",
        "Can you ship the replacement to my office address instead?",
    ],
    "technical": [
        "The app closes itself every time I open the settings tab.",
        "My headphones will not pair with the laptop after the update.",
        "The website shows error 502 when I try to check out.",
        "Firmware update stuck at 40 percent on the smart speaker.",
    ],
    "account": [
        "I never receive the two-factor code by SMS any more.",
        "Please delete my account and all data you hold about me.",
        "I want to change the e-mail on my profile to jane.doe@example.com",
        "Locked out after too many password attempts, how do I get back in?",
    ],
    "refund": [
        "I returned the blender two weeks ago and still have no refund.",
        "The refund I got is 10 euros less than what I paid.",
        "You cancelled my order, when will the money be back on my card?",
        "I would like my money back for the broken charger.",
    ],
    "general": [
        "Do you have the blue version of the kettle in stock in Berlin?",
        "Are your stores open on public holidays?",
        "Can I buy a gift card online and print it at home?",
        "Great service last week, just wanted to say thanks!",
    ],
}


def test_serve_feedback_export_run_report(served_project: Path, tmp_path: Path) -> None:
    from adaptlab import Project, summarize_project
    from tests.conftest import run_cli

    project = tmp_path / "loop"
    shutil.copytree(served_project, project)
    # The session's project may have served other tests' requests: this loop counts its own.
    with sqlite3.connect(project / ".adaptlab" / "runs.db") as conn:
        conn.execute("DELETE FROM feedback")
        conn.execute("DELETE FROM requests")
    key = add_key(project, "app")
    server = start_server(project, "--candidate", "few-shot", "--shadow", "zero-shot")
    sent: list[tuple[str, str, str]] = []  # (request id, text, gold)
    try:
        client = OpenAI(base_url=server.v1, api_key=key, max_retries=0)
        for label, texts in TICKETS.items():
            for i, text in enumerate(texts):
                completion = client.chat.completions.create(
                    model="default",
                    messages=[{"role": "user", "content": text}],
                    user=f"customer-{label}-{i}",
                )
                sent.append((completion.id, text, label))
        unlabelled = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hello?"}]
        )
        auth = {"Authorization": f"Bearer {key}"}
        for rid, _, gold in sent:
            r = httpx2.post(
                f"{server.v1}/feedback", json={"request_id": rid, "label": gold}, headers=auth
            )
            assert r.status_code == 200, r.text
        r = httpx2.post(
            f"{server.v1}/feedback", json={"request_id": unlabelled.id, "rating": 1}, headers=auth
        )
        assert r.status_code == 200
        r = httpx2.post(
            f"{server.v1}/feedback",
            json={"request_id": "chatcmpl-nope", "label": "billing"},
            headers=auth,
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_request"
    finally:
        server.stop()

    stats = run_cli("logs", "stats", "-p", str(project))
    assert stats.exit_code == 0, stats.output
    assert "few-shot" in stats.output and "zero-shot (shadow)" in stats.output
    assert "few-shot vs zero-shot (shadow) on 24 labelled requests" in stats.output

    out = project / "data" / "served.jsonl"
    exported = run_cli("logs", "export", "-p", str(project), "-o", str(out))
    assert exported.exit_code == 0, exported.output
    assert "24 requests exported (24 with a label)" in exported.output
    assert "1 request without label feedback left out" in exported.output
    assert "personal data in 1 input " in exported.output and "jane.doe" not in exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["text"], r["label"]) for r in rows] == sent
    assert all(r["served_by"] == "few-shot" for r in rows)

    # The served traffic becomes the test split of the next run.
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["data"]["test_path"] = "data/served.jsonl"
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ran = run_cli("run", "-p", str(project), "-c", "zero-shot", "-c", "few-shot")
    assert ran.exit_code == 0, ran.output
    summary = summarize_project(Project.load(project))
    assert summary.split["test"] == 24 and {c.name for c in summary.candidates} == {
        "zero-shot",
        "few-shot",
    }
    # Its test examples are the served inputs with the labels given as feedback.
    few = summary.candidate("few-shot")
    assert sorted((row.input, row.gold) for row in few.rows) == sorted((t, g) for _, t, g in sent)
    report = run_cli("report", "-p", str(project))
    assert report.exit_code == 0, report.output
    html = (project / "reports" / "report.html").read_text()
    assert "few-shot" in html and "zero-shot" in html
    # The served traffic has its own section: the table, the plot, the paired test.
    served = html[html.index('id="served"') :]
    assert "zero-shot (shadow)" in served and "<svg" in served[: served.index("</figure>")]
    assert "against its shadow zero-shot on the 24 labelled requests" in served
