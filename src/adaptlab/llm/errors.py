"""What a provider's error means, read from its code, type and param, not only its status.

Both backends hand an error's parts to :func:`classify`, which knows three kinds that
the status alone hides:

* **the account**: 429 ``insufficient_quota`` (OpenAI), a ``billing_error`` or "credit
  balance is too low" (Anthropic). Retrying cannot help: the account has no quota left.
* **one input**: a content filter (Azure ``content_filter`` with ``param: prompt``,
  ``content_policy_violation``, an ``invalid_prompt`` flagged by policy), a prompt longer
  than the context window (``context_length_exceeded``, "prompt is too long"), or any
  other 400 whose ``param`` is the prompt or a message. That input gets a stored
  prediction with its status (filtered, too_long, error) and the candidate goes on.
* **a parameter**: a 400 that names a ``param`` (``unsupported_parameter``,
  ``unsupported_value``, Anthropic's "temperature: Extra inputs are not permitted"):
  the error says which one and how to stop sending it.

Anything else is left to the status (None), as before.
"""

from __future__ import annotations

import re

from adaptlab.llm.types import InputError, LLMCallError, PermanentError

_QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_error"}
_QUOTA_TEXT = re.compile(
    r"exceeded your current quota|credit balance is too low|insufficient[_ ]quota|"
    r"billing[_ ]hard[_ ]limit",
    re.I,
)
_FILTER_CODES = {
    "content_filter",
    "content_policy_violation",
    "responsibleaipolicyviolation",
    "content_management_policy",
}
_TOO_LONG_CODES = {
    "context_length_exceeded",
    "string_above_max_length",
    "exceed_context_size_error",
    "prompt_too_long",
}
_TOO_LONG_TEXT = re.compile(
    r"maximum context length|context[_ ]length[_ ]exceeded|context window|prompt is too long|"
    r"exceeds the (?:available )?context|too many (?:input )?tokens|input is too long",
    re.I,
)
_POLICY_TEXT = re.compile(r"polic|flagged|content management|safety", re.I)
_INPUT_PARAMS = ("prompt", "messages", "input", "system", "contents")
_PARAM_CODES = {"unsupported_parameter", "unsupported_value", "invalid_parameter"}
_PARAM_IN_TEXT = re.compile(r"unsupported (?:parameter|value):\s*'([\w.\[\]]+)'", re.I)
# Anthropic names the field first: "temperature: Extra inputs are not permitted".
_FIELD_FIRST = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w\[\]]+)*):\s")
_PARAM_FIX = {
    "temperature": "this model takes no sampling parameters: set 'temperature: null' in the "
    "candidate's params (adaptlab then sends none)",
    "top_p": "this model takes no sampling parameters: set 'temperature: null' in the "
    "candidate's params (adaptlab then sends neither temperature nor top_p)",
    "max_tokens": "this model wants max_completion_tokens: adaptlab sends that to ids starting "
    "o1, o3, o4 or gpt-5 and to models its price table marks 'reasoning: true'; set 'name' "
    "to the provider's model id",
    "response_format": "this model refuses structured output: set 'output: text' in the "
    "candidate's params",
    "seed": "this server refuses 'seed'; use another server or model",
    "stop": "this model refuses stop sequences; use a template without them",
}


def _low(value: object) -> str:
    return value.lower() if isinstance(value, str) else ""


def classify(
    *,
    provider: str,
    model: str,
    status: int | None,
    code: object,
    param: object,
    etype: object,
    message: str,
) -> LLMCallError | None:
    """The error an API error body means, or None to decide by ``status`` alone.

    ``status`` is None for an error event inside a 200 stream.
    """
    code_l, type_l, param_l = _low(code), _low(etype), _low(param)
    where = f"{provider} model '{model}'"
    shown = (
        f"{code or etype or 'error'}"
        + (f", param '{param}'" if param else "")
        + (f", HTTP {status}" if status else "")
    )
    if code_l in _QUOTA_CODES or type_l in _QUOTA_CODES or _QUOTA_TEXT.search(message):
        return PermanentError(
            f"the account has no quota left at {where} ({shown}): {message}",
            kind="quota",
            fix="add credit or raise the usage limit in the provider's billing settings "
            "(or use another key: api_key_env), then rerun; answers so far are cached",
        )
    if status is not None and status >= 500:
        return None
    if status is not None and status not in (400, 403, 413, 422):
        return None
    if code_l in _FILTER_CODES or type_l in _FILTER_CODES:
        return InputError(
            f"the provider's content filter refused this input ({shown}): {message}",
            status="filtered",
        )
    if code_l == "invalid_prompt":
        status_name = "filtered" if _POLICY_TEXT.search(message) else "error"
        return InputError(
            f"the provider refused this prompt ({shown}): {message}", status=status_name
        )
    if (
        status == 413  # payload too large: this request's size
        or code_l in _TOO_LONG_CODES
        or type_l in _TOO_LONG_CODES
        or (_TOO_LONG_TEXT.search(message) and status in (400, None))
    ):
        return InputError(
            f"this input does not fit the context window of {where} ({shown}): {message}",
            status="too_long",
        )
    named = param_l or _named_param(message, field_first=provider == "anthropic")
    if named and named.startswith(_INPUT_PARAMS):
        return InputError(f"the provider refused this input ({shown}): {message}", status="error")
    if status is None or status == 403:
        return None
    if named or code_l in _PARAM_CODES:
        name = named or "?"
        unsupported = code_l in ("unsupported_parameter", "unsupported_value") or re.search(
            r"unsupported|not supported|extra inputs|unrecognized|unknown parameter", message, re.I
        )
        if unsupported or not code_l:
            what = "does not accept the parameter"
            fix = _PARAM_FIX.get(
                name.split(".")[0],
                f"stop sending '{name}' to this model (see its documentation at the provider)",
            )
        else:  # a value out of range, say
            what = "refused the value of the parameter"
            fix = (
                "lower max_tokens in the candidate's params"
                if name in ("max_tokens", "max_completion_tokens")
                else f"change '{name}' to a value the provider accepts (its message says which)"
            )
        return PermanentError(
            f"{where} {what} '{name}' ({shown}): {message}", kind="param", fix=fix
        )
    return None


def _named_param(message: str, *, field_first: bool) -> str:
    found = _PARAM_IN_TEXT.search(message) or (field_first and _FIELD_FIRST.match(message))
    if not found or found.group(1).lower() in ("error", "warning", "note"):
        return ""
    return found.group(1).lower()
