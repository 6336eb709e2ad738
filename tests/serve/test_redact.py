"""The access log's request line keeps no query-string value (an API key in a URL)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from adaptlab.serve.redact import REDACTED, RedactQuery, redact_query, uvicorn_log_config


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/models?api-key=sk-1", f"/v1/models?api-key={REDACTED}"),
        ("/v1/models?a=1&key=sk-2", f"/v1/models?a={REDACTED}&key={REDACTED}"),
        ("/v1/models?sk-3", f"/v1/models?{REDACTED}"),  # a bare token
        ("/v1/models?key=", f"/v1/models?key={REDACTED}"),
        ("/v1/models?", "/v1/models?"),
        ("/v1/models?x=1=2&&y", f"/v1/models?x={REDACTED}&&{REDACTED}"),
    ],
)
def test_every_query_value_is_redacted(path: str, shown: str) -> None:
    assert redact_query(path) == shown


def test_the_filter_rewrites_uvicorns_access_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/models?api-key=sk-secret", "1.1", 401), None,
    )  # fmt: skip
    assert RedactQuery().filter(record)
    assert "sk-secret" not in record.getMessage()
    assert f"/v1/models?api-key={REDACTED}" in record.getMessage()
    # a record of another shape passes unchanged
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("?a=1",), None)
    assert RedactQuery().filter(other) and other.getMessage() == "?a=1"


def test_the_log_config_puts_the_filter_on_the_access_handler() -> None:
    config = uvicorn_log_config()
    assert "redact_query" in config["handlers"]["access"]["filters"]
    logging.config.dictConfig(config)
