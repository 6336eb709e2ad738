"""Keys and limits of a real server: 401, 429 with Retry-After, 413; and the key is in
no file, log line or response."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from openai import AuthenticationError, OpenAI

from tests.serve.conftest import add_key, start_server

pytestmark = pytest.mark.slow


def test_keys_limits_and_no_key_anywhere(served_project: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    secret = add_key(served_project, "limited", "--rpm", "3")
    other = add_key(served_project, "unlimited")
    server = start_server(
        served_project,
        "--candidate",
        "zero-shot",
        "--max-body-kb",
        "16",
        "--max-input-chars",
        "500",
        "--access-log",  # off by default; on, it shows no query value
    )
    seen: list[str] = []  # every response, headers and body

    def call(method: str, path: str, key: str | None = None, **kw: object) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))  # type: ignore[call-overload]
        r = httpx2.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]
        seen.append(json.dumps(dict(r.headers)) + r.text)
        return r

    ticket = {"input": "my parcel is late", "model": "default"}
    try:
        # 401: no key, a wrong key, another scheme.
        for key in (None, "al-wrong", f"{secret}x"):
            r = call("POST", "/v1/predict", key, json=ticket)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
        r = httpx2.post(
            f"{server.url}/v1/predict", headers={"Authorization": f"Basic {secret}"}, json=ticket
        )
        assert r.status_code == 401
        assert call("GET", "/v1/models").status_code == 401
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{server.url}/v1", api_key="al-nope", max_retries=0).models.list()
        # 429 past 3 requests a minute, with Retry-After in whole seconds.
        codes = [call("POST", "/v1/predict", secret, json=ticket).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = call("POST", "/v1/predict", secret, json=ticket)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # The other key has its own budget.
        assert call("POST", "/v1/predict", other, json=ticket).status_code == 200
        # 413: a body over 16 KiB (by Content-Length and chunked), an input over 500 chars.
        big = {"input": "x" * 20_000}
        assert call("POST", "/v1/predict", other, json=big).status_code == 413
        chunks = (b'{"input": "' + b"y" * 4096 for _ in range(8))
        assert call("POST", "/v1/predict", other, content=chunks).status_code == 413
        r = call("POST", "/v1/predict", other, json={"input": "z" * 600})
        assert r.status_code == 413 and "500" in r.json()["error"]["message"]
        # Unknown model, malformed body: OpenAI-shaped errors, not tracebacks.
        r = call("POST", "/v1/predict", other, json={"input": "a", "model": "nope"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = call("POST", "/v1/chat/completions", other, json={"model": "default"})
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
        r = call("POST", "/v1/chat/completions", other, content=b"{not json")
        assert r.status_code == 400
        # Found by a new user: every refusal in OpenAI's shape, with a reason.
        r = call(
            "POST",
            "/v1/chat/completions",
            other,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        r = call(
            "POST",
            "/v1/predict",
            other,
            content=b'"just a string"',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]["message"]
        chat = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "n": 2}
        assert call("POST", "/v1/chat/completions", other, json=chat).status_code == 400
        r = call("POST", "/v1/predict", other, json={"input": "   "})
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_input"
        for method, path, status in (("GET", "/v1/nope", 404), ("GET", "/v1/predict", 405)):
            r = call(method, path, other)
            assert r.status_code == status and r.json()["error"]["code"] in (
                "not_found",
                "method_not_allowed",
            )
        answered = call("POST", "/v1/predict", other, json=ticket).json()["id"]
        r = call("POST", "/v1/feedback", other, json={"request_id": answered, "label": "nonsense"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_label"
        assert "billing" in r.json()["error"]["message"]
        r = call("POST", "/v1/feedback", other, json={"request_id": answered, "label": "billing"})
        assert r.status_code == 200
        # CORS is off: no Access-Control headers for a browser origin.
        r = httpx2.options(
            f"{server.url}/v1/predict",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers
        # A revoked key stops working within a second or so.
        assert run_cli("keys", "revoke", "unlimited", "-p", str(served_project)).exit_code == 0
        import time

        time.sleep(1.2)
        assert call("POST", "/v1/predict", other, json=ticket).status_code == 401
        listing = run_cli("keys", "list", "-p", str(served_project)).output
        # A key pasted into the URL (refused: keys go in the header) never reaches the
        # access log, whatever the parameter is called, with or without a name.
        for query in (f"api-key={secret}", f"token=1&key={secret}", secret):
            assert call("GET", f"/v1/models?{query}").status_code == 401
    finally:
        log = server.stop()
    # The keys appear in no response, no log line, no listing and no file of the project.
    # The files are read by another process: opening and closing a database file here
    # would drop the POSIX locks SQLite holds on it in this process.
    import subprocess
    import sys

    search = (
        "import sys, pathlib\n"
        "keys = [k.encode() for k in sys.argv[2:]]\n"
        "for p in pathlib.Path(sys.argv[1]).rglob('*'):\n"
        "    if p.is_file() and not p.is_symlink() and any(k in p.read_bytes() for k in keys):\n"
        "        print(p)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", search, str(served_project), secret, other],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout == "", f"a key is in: {found.stdout}"
    assert (served_project / ".adaptlab" / "runs.db").is_file()
    assert "GET /v1/models?api-key=<redacted> HTTP" in log
    assert "GET /v1/models?token=<redacted>&key=<redacted> HTTP" in log
    for key in (secret, other):
        assert key not in log and key not in listing
        assert all(key not in text for text in seen)
    assert "limited" in listing and secret[:9] in listing
