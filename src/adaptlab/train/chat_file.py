"""Chat fine-tuning files (JSON Lines of ``{"messages": [...]}``): load, check, count.

The format checks are those of OpenAI's cookbook "Data preparation and analysis for chat
model fine-tuning" (https://cookbook.openai.com/examples/chat_finetuning_data_prep),
each reported with the cookbook's key as its code and the line it is on:

=================================== ===================================================
``data_type``                       a line is not a JSON object
``missing_messages_list``           no ``messages``, an empty one, or not a list
``message_missing_key``             a message without ``role`` or ``content``
``message_unrecognized_key``        a key other than role, content, name, function_call,
                                    weight (and tool_calls, tool_call_id of the tools
                                    format)
``unrecognized_role``               a role other than system, user, assistant, function
                                    (and tool)
``missing_content``                 content empty or not a string (an assistant message
                                    that calls a function may have none)
``example_missing_assistant_message`` no assistant message to learn from
=================================== ===================================================

plus what stops a file before those: ``bad_json`` (a line that is not JSON), ``not_chat``
(no line has ``messages``: labelled data, not chat), ``empty_file``, ``json_array``,
encoding and size errors (:func:`adaptlab.data.load`'s), and ``message_not_object``,
``invalid_weight`` (weight must be 0 or 1, as OpenAI's fine-tuning guide says).

:func:`chat_stats` adds what the cookbook prints and what the product needs: messages
and tokens per example, counts over the model's context window and over the
provider's per-example cap, answer balance, duplicates and conflicts, personal data
(:mod:`adaptlab.data.pii`), system messages and the training-cost estimate; tokens are
counted by a :class:`~adaptlab.train.chat_tokens.TokenCounter`
(:func:`adaptlab.train.chat_tokens.token_counter`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.core.errors import DataError, Issue
from adaptlab.core.files import read_regular_file
from adaptlab.core.strict_json import NotJsonError, json_fix, parse_json
from adaptlab.data.load import _decode, _json_type
from adaptlab.data.pii import KINDS, PiiMatch, find_pii
from adaptlab.data.validate import normalise
from adaptlab.train.chat_tokens import TemplateRefused, TokenCounter
from adaptlab.train.cost import DEFAULT_MAX_TOKENS_PER_EXAMPLE, max_tokens_per_example

#: Keys a message may have (the cookbook's five, and the tools format's two).
MESSAGE_KEYS = ("role", "content", "name", "function_call", "weight", "tool_calls", "tool_call_id")
#: Roles a message may have (the cookbook's four, and the tools format's ``tool``).
ROLES = ("system", "user", "assistant", "function", "tool")
#: Keys a record may have besides ``messages`` (OpenAI: function and tool definitions).
RECORD_KEYS = ("messages", "functions", "tools", "parallel_tool_calls")
#: Format errors printed per kind before the rest are counted.
MAX_ERRORS_PER_KIND = 5
#: An answer is a label (and its balance is shown) up to this many characters…
LABEL_MAX_CHARS = 60
#: …when there are at most this share of distinct answers per example.
LABEL_MAX_DISTINCT_SHARE = 0.5
#: Places listed per kind of personal data.
PII_PLACES = 3
#: Distinct lines whose findings are remembered while scanning a file for personal data.
PII_MEMO_LINES = 200_000

_FIX = {
    "data_type": 'write each line as one JSON object: {"messages": [{"role": "user", '
    '"content": "…"}, {"role": "assistant", "content": "…"}]}',
    "missing_messages_list": 'give this record a non-empty list under "messages"',
    "message_not_object": 'write each message as an object {"role": "…", "content": "…"}',
    "message_missing_key": 'give every message both "role" and "content"',
    "message_unrecognized_key": "remove the key or move it into the content; allowed keys: "
    + ", ".join(MESSAGE_KEYS),
    "unrecognized_role": "use one of the roles " + ", ".join(ROLES),
    "missing_content": "write the message's text as a non-empty string in 'content', or "
    "delete the message",
    "invalid_weight": "set weight to 0 (do not learn this assistant message) or 1, or drop it",
    "example_missing_assistant_message": "add the answer the model should learn as a "
    '{"role": "assistant", "content": "…"} message',
}


@dataclass(frozen=True)
class ChatExample:
    """One valid record: its ``messages`` (role/content dicts as written) and where it is."""

    messages: list[dict[str, Any]]
    file: str
    line: int

    @property
    def answer(self) -> str:
        """The content of the last assistant message (what the model learns to say)."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant" and isinstance(message.get("content"), str):
                return str(message["content"])
        return ""

    @property
    def prompt_key(self) -> str:
        """What the model is asked: every message before the last assistant one, as JSON."""
        last = max(i for i, m in enumerate(self.messages) if m.get("role") == "assistant")
        before = [(m.get("role"), m.get("content")) for m in self.messages[:last]]
        return json.dumps(before, ensure_ascii=False)

    @property
    def user_text(self) -> str:
        """The user messages joined: what leakage between files compares."""
        return "\n".join(str(m.get("content")) for m in self.messages if m.get("role") == "user")


def _read_text(path: Path, max_file_mb: float) -> str:
    raw = read_regular_file(
        path,
        max_bytes=int(max_file_mb * (1 << 20)),
        limit_name="--max-file-mb",
        what="chat file",
        error=DataError,
        fix_path='name a chat JSONL file (one {"messages": […]} per line)',
        size_fix="pass --max-file-mb with a larger limit if the file is meant to be this "
        "big, or check that the path names the right file",
    )
    try:
        return _decode(raw, path, "utf-8")
    except DataError as exc:
        # load's fixes name adaptlab.yaml's data.encoding; a chat file has no such setting.
        fix = exc.fix or ""
        if "iconv" in fix:
            iconv = fix.split("convert it: ", 1)[-1]
            fix = f"convert it to UTF-8: {iconv} < FILE > NEW (OpenAI reads UTF-8 only)"
        elif exc.issue.code == "nul-byte":
            fix = "remove the NUL bytes (tr -d '\\000' < FILE > NEW), or check that FILE is text"
        else:
            fix = "re-save the file as UTF-8 (OpenAI reads UTF-8 only)"
        raise DataError(
            f"{exc.issue.message} ({exc.issue.code})",
            file=path,
            line=exc.line,
            fix=fix,
            code=exc.issue.code,
        ) from None


def read_chat_records(path: Path, *, max_file_mb: float = 1024) -> list[tuple[int, Any]]:
    """(line, parsed JSON) of every non-blank line; DataError listing each unreadable line.

    Raises DataError for a file that cannot be read (missing, not a regular file, over
    ``max_file_mb``, not UTF-8, a NUL byte), that is empty, that is one JSON array, or
    that has lines which are not JSON (``bad_json``, all of them, each with its line).
    """

    text = _read_text(path, max_file_mb)
    records: list[tuple[int, Any]] = []
    issues: list[Issue] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip(" \t\r"):
            continue
        if not records and not issues and raw.lstrip().startswith("[") and _array_file(raw):
            raise DataError(
                "the file is one JSON array, not JSON Lines (one record per line) (json_array)",
                file=path,
                line=lineno,
                fix="write one record per line, e.g. jq -c '.[]' FILE > FILE.jsonl",
                code="json_array",
            )
        try:
            records.append((lineno, parse_json(raw)))
        except json.JSONDecodeError as exc:
            msg, fix = f"invalid JSON at column {exc.colno}: {exc.msg}", json_fix(raw, exc)
        except NotJsonError as exc:
            msg, fix = str(exc), exc.fix
        except RecursionError:
            msg, fix = "the JSON on this line is nested too deeply to read", _FIX["data_type"]
        except ValueError as exc:  # an integer of more than 4,300 digits
            msg, fix = f"unreadable JSON value: {exc}", "write long numbers as strings"
        else:
            continue
        if '"label"' in fix:  # load's example is a labelled record, not a chat one
            fix = _FIX["data_type"]
        issues.append(
            Issue(f"{msg} (bad_json)", file=str(path), line=lineno, fix=fix, code="bad_json")
        )
    if issues:
        raise DataError(f"{len(issues)} line(s) of {path} are not JSON", issues=_fold(issues))
    if not records:
        raise DataError(
            "the file holds no records (empty_file)",
            file=path,
            line=1,
            fix='add chat examples, one {"messages": […]} per line',
            code="empty_file",
        )
    return records


def _array_file(first: str) -> bool:
    """Whether a first line starting with '[' opens a JSON array of records (one line or
    many), rather than being one record that is an array (a ``data_type`` error)."""

    try:
        value = parse_json(first)
    except (ValueError, RecursionError):
        return True  # an array that goes on over the next lines
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def _message_issues(message: Any, where: str, path: Path, line: int) -> list[Issue]:
    def issue(code: str, text: str) -> Issue:
        return Issue(
            f"{where}: {text} ({code})", file=str(path), line=line, fix=_FIX[code], code=code
        )

    if not isinstance(message, dict):
        return [issue("message_not_object", f"is {_json_kind(message)}, not an object")]
    found: list[Issue] = []
    missing = [k for k in ("role", "content") if k not in message]
    calls = message.get("function_call") or message.get("tool_calls")
    if missing and not (missing == ["content"] and calls):
        found.append(issue("message_missing_key", f"has no {' or '.join(missing)}"))
    extra = [k for k in message if k not in MESSAGE_KEYS]
    if extra:
        found.append(issue("message_unrecognized_key", f"has unrecognised key(s) {extra}"))
    role = message.get("role")
    if "role" in message and role not in ROLES:
        found.append(issue("unrecognized_role", f"has role {json.dumps(role)}"))
    content = message.get("content")
    if "content" in message or not missing:
        if calls and content in (None, ""):
            pass  # an assistant message that only calls a function (the cookbook allows it)
        elif not isinstance(content, str):
            found.append(issue("missing_content", f"content is {_json_kind(content)}"))
        elif not content.strip():
            found.append(issue("missing_content", "content is empty"))
    if "weight" in message and (
        isinstance(message["weight"], bool) or message["weight"] not in (0, 1)
    ):
        found.append(issue("invalid_weight", f"weight is {json.dumps(message['weight'])}"))
    return found


def _json_kind(value: Any) -> str:
    return _json_type(value)


def check_chat_records(
    records: Sequence[tuple[int, Any]], path: Path
) -> tuple[list[ChatExample], list[Issue]]:
    """The valid examples, and every format error and warning (see the module docstring).

    Each issue names ``path`` and the record's line, has the cookbook's key as ``code``
    and a fix. A record with any error is not among the examples.
    """
    if not any(isinstance(rec, dict) and "messages" in rec for _, rec in records):
        first = next((rec for _, rec in records if isinstance(rec, dict)), None)
        keys = ", ".join(sorted(first)) if first else "none"
        raise DataError(
            f"no record has 'messages': this is not a chat file (keys of the first record: "
            f"{keys}) (not_chat)",
            file=path,
            line=records[0][0],
            fix="turn labelled examples into chat records with 'adaptlab data convert -p "
            "PROJECT --candidate NAME', or check a project's data with 'adaptlab data check "
            "-p PROJECT'",
            code="not_chat",
        )
    examples: list[ChatExample] = []
    issues: list[Issue] = []
    for line, rec in records:
        if not isinstance(rec, dict):
            issues.append(
                Issue(
                    f"the record is {_json_kind(rec)}, not an object (data_type)",
                    file=str(path),
                    line=line,
                    fix=_FIX["data_type"],
                    code="data_type",
                )
            )
            continue
        messages = rec.get("messages")
        if not isinstance(messages, list) or not messages:
            what = "missing" if "messages" not in rec else f"{_json_kind(messages)}"
            what = "an empty list" if messages == [] else what
            issues.append(
                Issue(
                    f"'messages' is {what} (missing_messages_list)",
                    file=str(path),
                    line=line,
                    fix=_FIX["missing_messages_list"],
                    code="missing_messages_list",
                )
            )
            continue
        found: list[Issue] = []
        for i, message in enumerate(messages):
            found += _message_issues(message, f"message {i + 1}", path, line)
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            found.append(
                Issue(
                    "no assistant message (example_missing_assistant_message)",
                    file=str(path),
                    line=line,
                    fix=_FIX["example_missing_assistant_message"],
                    code="example_missing_assistant_message",
                )
            )
        extra = [k for k in rec if k not in RECORD_KEYS]
        if extra:
            issues.append(
                Issue(
                    f"record keys {extra} are not part of the chat format "
                    "(record_unrecognized_key)",
                    file=str(path),
                    line=line,
                    fix="remove them and keep metadata in another file, or the provider "
                    "may refuse the file.",
                    severity="warning",
                    code="record_unrecognized_key",
                )
            )
        issues += found
        if not found:
            examples.append(ChatExample(messages, str(path), line))
    return examples, issues


def _fold(issues: Sequence[Issue], per_kind: int = MAX_ERRORS_PER_KIND) -> list[Issue]:
    """The first ``per_kind`` issues of each code, then one issue counting the rest."""
    shown: list[Issue] = []
    rest: dict[str, list[Issue]] = defaultdict(list)
    seen: Counter[str] = Counter()
    for issue in issues:
        seen[issue.code] += 1
        if seen[issue.code] <= per_kind:
            shown.append(issue)
        else:
            rest[issue.code].append(issue)
    for code, more in rest.items():
        lines = ", ".join(str(i.line) for i in more[:10]) + (" …" if len(more) > 10 else "")
        shown.append(
            Issue(
                f"… and {len(more)} more {code} on lines {lines}",
                file=more[0].file,
                severity=more[0].severity,
                code=code,
            )
        )
    return shown


def load_chat_file(
    path: str | Path, *, max_file_mb: float = 1024
) -> tuple[list[ChatExample], list[Issue]]:
    """Read and check a chat JSONL file: (examples, warnings).

    Raises DataError for a file-level problem (see :func:`read_chat_records`) and when
    any record has a format error; its ``issues`` list the first
    :data:`MAX_ERRORS_PER_KIND` of each kind with their lines, then a count per kind.
    """
    path = Path(path)
    examples, issues = check_chat_records(read_chat_records(path, max_file_mb=max_file_mb), path)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        counts = Counter(i.code for i in errors)
        summary = ", ".join(f"{code} {n}" for code, n in counts.items())
        raise DataError(
            f"{len(errors)} format error(s) in {path} ({summary})", issues=_fold(errors)
        )
    return examples, [i for i in issues if i.severity == "warning"]


# ---------------------------------------------------------------- statistics


@dataclass
class Distribution:
    """min, p5, median, p95, max and mean of a list of numbers (numpy's linear quantiles)."""

    min: float
    p5: float
    median: float
    p95: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        import numpy as np

        a = np.asarray(values, dtype=float)
        p5, median, p95 = (float(x) for x in np.quantile(a, [0.05, 0.5, 0.95]))
        return cls(float(a.min()), p5, median, p95, float(a.max()), float(a.mean()))


@dataclass
class PiiFinding:
    """Personal data of one kind: how many, and the first places (file:line, masked)."""

    count: int = 0
    places: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class ChatStats:
    """What ``adaptlab data check FILE`` prints for a valid chat file."""

    n_examples: int
    messages: Distribution
    tokens: Distribution
    assistant_tokens: Distribution
    token_counts: list[int]
    counter: str  # model and how its tokens were counted
    exact: bool
    context_window: int | None
    over_context: int
    cap: int  # tokens of an example trained on (and billed) at most
    over_cap: int
    with_system: int
    system_prompts: int  # distinct system messages
    without_user: int
    answers: Counter[str] | None  # None: answers are free text, not labels
    duplicate_groups: list[list[int]]  # lines of identical records
    conflicts: list[list[int]]  # lines of the same prompt with different answers
    pii: dict[str, PiiFinding]


def _answers_are_labels(answers: Sequence[str]) -> bool:
    distinct = set(answers)
    return all(len(a) <= LABEL_MAX_CHARS and "\n" not in a for a in distinct) and len(
        distinct
    ) <= max(2, LABEL_MAX_DISTINCT_SHARE * len(answers))


def chat_stats(examples: Sequence[ChatExample], counter: TokenCounter) -> ChatStats:
    """Statistics of valid ``examples`` (at least one), tokens counted by ``counter``.

    Raises DataError naming each example that a local model's chat template refuses.
    """

    if not examples:
        raise ValueError("no examples")
    tokens: list[int] = []
    refused: list[Issue] = []
    for ex in examples:
        try:
            tokens.append(counter.count(ex.messages))
        except TemplateRefused as exc:
            refused.append(
                Issue(
                    f"the chat template of {counter.model} refuses this conversation: {exc} "
                    "(template_refused)",
                    file=ex.file,
                    line=ex.line,
                    fix="write the messages in the order the model was trained on (most "
                    "templates want user and assistant to alternate, a system message first)",
                    code="template_refused",
                )
            )
    if refused:
        raise DataError(
            f"{len(refused)} example(s) do not fit {counter.model}'s chat template",
            issues=_fold(refused),
        )
    # The cookbook's "tokens in assistant's messages": the contents alone, per example.
    assistant = [
        sum(
            counter.count_text(m["content"])
            for m in ex.messages
            if m.get("role") == "assistant" and isinstance(m.get("content"), str)
        )
        for ex in examples
    ]
    # A provider cuts (and bills) examples at its cap; a local trainer at the context window.
    if counter.kind == "hf":
        cap = counter.context_window or DEFAULT_MAX_TOKENS_PER_EXAMPLE
    else:
        cap = max_tokens_per_example(counter.model)
    answers = [ex.answer for ex in examples]
    by_record: dict[str, list[int]] = defaultdict(list)
    by_prompt: dict[str, list[ChatExample]] = defaultdict(list)
    for ex in examples:
        by_record[json.dumps(ex.messages, sort_keys=True, ensure_ascii=False)].append(ex.line)
        by_prompt[ex.prompt_key].append(ex)
    conflicts = [
        [e.line for e in group]
        for group in by_prompt.values()
        if len({e.answer for e in group}) > 1
    ]
    pii: dict[str, PiiFinding] = {kind: PiiFinding() for kind in KINDS}
    # Line by line, each distinct line scanned once: a prompt template repeats the same
    # lines (instructions, the label list) in every example, and only the input differs.
    memo: dict[str, tuple[PiiMatch, ...]] = {}
    for ex in examples:
        for message in ex.messages:
            content = message.get("content")
            if not isinstance(content, str):
                continue
            for text_line in content.split("\n"):
                found = memo.get(text_line)
                if found is None:
                    found = tuple(find_pii(text_line))
                    if len(memo) < PII_MEMO_LINES:
                        memo[text_line] = found
                for match in found:
                    finding = pii[match.kind]
                    finding.count += 1
                    if len(finding.places) < PII_PLACES:
                        finding.places.append((ex.file, ex.line, match.masked))
    systems = [
        str(m.get("content")) for ex in examples for m in ex.messages if m.get("role") == "system"
    ]
    window = counter.context_window
    return ChatStats(
        n_examples=len(examples),
        messages=Distribution.of([len(ex.messages) for ex in examples]),
        tokens=Distribution.of(tokens),
        assistant_tokens=Distribution.of(assistant),
        token_counts=tokens,
        counter=f"{counter.model} ({counter.note})",
        exact=counter.exact,
        context_window=window,
        over_context=sum(t > window for t in tokens) if window else 0,
        cap=cap,
        over_cap=sum(t > cap for t in tokens),
        with_system=sum(any(m.get("role") == "system" for m in ex.messages) for ex in examples),
        system_prompts=len(set(systems)),
        without_user=sum(not any(m.get("role") == "user" for m in ex.messages) for ex in examples),
        answers=Counter(answers) if _answers_are_labels(answers) else None,
        duplicate_groups=[lines for lines in by_record.values() if len(lines) > 1],
        conflicts=conflicts,
        pii={kind: f for kind, f in pii.items() if f.count},
    )


@dataclass
class Leak:
    """User prompts found in two files: which files, how many, the first line pairs."""

    first: str
    second: str
    count: int
    lines: list[tuple[int, int]]


def find_chat_leakage(files: dict[str, Sequence[ChatExample]]) -> list[Leak]:
    """User prompts (normalised as :func:`adaptlab.data.validate.normalise`) that appear in
    two of ``files`` (name -> examples, e.g. train/val/test), for every pair in order."""

    keyed = {
        name: {normalise(ex.user_text): ex.line for ex in reversed(list(exs))}
        for name, exs in files.items()
    }
    names = list(files)
    leaks = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = [k for k in keyed[first] if k in keyed[second]]
            if shared:
                pairs = sorted((keyed[first][k], keyed[second][k]) for k in shared)
                leaks.append(Leak(first, second, len(shared), pairs[:5]))
    return leaks


__all__ = [
    "MESSAGE_KEYS",
    "ROLES",
    "ChatExample",
    "ChatStats",
    "Distribution",
    "Leak",
    "PiiFinding",
    "chat_stats",
    "check_chat_records",
    "find_chat_leakage",
    "load_chat_file",
    "read_chat_records",
]
