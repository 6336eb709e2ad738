"""Provider error bodies, as real servers send them, classified by code, type and param."""

from __future__ import annotations

import pytest

from adaptlab.llm.errors import classify
from adaptlab.llm.types import InputError, PermanentError

CASES = [
    # (provider, status, code, param, type, message, expected kind / input status, says)
    (
        "openai",
        400,
        "content_filter",
        "prompt",
        None,
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy.",
        "input-filtered",
        "content filter",
    ),
    (
        "openai",
        400,
        "400",
        None,
        "BadRequestError",  # vLLM
        "This model's maximum context length is 4096 tokens. However, you requested 5000 "
        "tokens (4984 in the messages, 16 in the completion).",
        "input-too_long",
        "context window",
    ),
    (
        "openai",
        400,
        "400",
        None,
        "exceed_context_size_error",  # llama.cpp server
        "the request exceeds the available context size, try increasing it",
        "input-too_long",
        "context window",
    ),
    (
        "openai",
        400,
        "invalid_prompt",
        None,
        "invalid_request_error",
        "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
        "input-filtered",
        "refused this prompt",
    ),
    (
        "openai",
        400,
        "invalid_prompt",
        None,
        "invalid_request_error",
        "Invalid prompt: the messages are empty.",
        "input-error",
        "refused this prompt",
    ),
    (
        "openai",
        429,
        "insufficient_quota",
        None,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        "quota",
        "no quota left",
    ),
    (
        "openai",
        None,
        "insufficient_quota",
        None,
        None,  # inside a stream
        "You exceeded your current quota.",
        "quota",
        "no quota left",
    ),
    (
        "openai",
        400,
        "unsupported_parameter",
        "temperature",
        "invalid_request_error",
        "Unsupported parameter: 'temperature' is not supported with this model.",
        "param",
        "'temperature'",
    ),
    (
        "openai",
        400,
        None,
        None,
        "invalid_request_error",  # the param only in the text
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
        "'max_completion_tokens' instead.",
        "param",
        "'max_tokens'",
    ),
    (
        "openai",
        400,
        "invalid_value",
        "max_tokens",
        "invalid_request_error",
        "max_tokens is too large: 100000. This model supports at most 16384 completion tokens.",
        "param",
        "refused the value of the parameter 'max_tokens'",
    ),
    (
        "anthropic",
        400,
        None,
        None,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "input-too_long",
        "context window",
    ),
    (
        "anthropic",
        400,
        None,
        None,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API.",
        "quota",
        "no quota left",
    ),
    ("anthropic", 402, None, None, "billing_error", "billing issue", "quota", "no quota left"),
    (
        "anthropic",
        400,
        None,
        None,
        "invalid_request_error",
        "top_k: Extra inputs are not permitted",
        "param",
        "'top_k'",
    ),
    (
        "anthropic",
        413,
        None,
        None,
        "request_too_large",
        "Request exceeds the maximum size",
        "input-too_long",
        "context window",
    ),
    (
        "openai",
        400,
        "invalid_request_error",
        None,
        "invalid_request_error",
        "Unsupported parameter: 'top_p' is not supported with this model.",
        "param",
        "does not accept the parameter 'top_p'",
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "code", "param", "etype", "message", "kind", "says"), CASES
)
def test_classify(
    provider: str,
    status: int | None,
    code: str | None,
    param: str | None,
    etype: str | None,
    message: str,
    kind: str,
    says: str,
) -> None:
    err = classify(
        provider=provider,
        model="m",
        status=status,
        code=code,
        param=param,
        etype=etype,
        message=message,
    )
    assert isinstance(err, PermanentError) and not err.transient
    assert err.kind == kind
    assert says in str(err)
    if not isinstance(err, InputError):
        assert err.fix


@pytest.mark.parametrize(
    ("status", "code", "etype", "message"),
    [
        (429, "rate_limit_exceeded", "requests", "Rate limit reached for requests"),
        (500, None, "server_error", "The server had an error"),
        (None, None, "overloaded_error", "Overloaded"),
        (401, "invalid_api_key", "invalid_request_error", "Incorrect API key provided"),
        (400, None, "invalid_request_error", "Error: something odd"),
    ],
)
def test_left_to_the_status(status: int | None, code: str | None, etype: str, message: str) -> None:
    err = classify(
        provider="openai",
        model="m",
        status=status,
        code=code,
        param=None,
        etype=etype,
        message=message,
    )
    assert err is None  # decided by the status, as before
