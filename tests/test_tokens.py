from __future__ import annotations

import hashlib
import inspect
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from adaptlab.llm import tokens
from adaptlab.llm.tokens import (
    ENCODING_FILES,
    cache_path,
    encoding_is_cached,
    estimate_tokens,
    openai_token_count,
    tiktoken_cache_dir,
)

MESSAGES = [("system", "You sort support tickets."), ("user", "My invoice is wrong.")]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record and refuse every download tiktoken or a socket would attempt."""
    import tiktoken.load

    attempts: list[str] = []

    def refuse(target: object, *args: object, **kwargs: object) -> Any:
        attempts.append(str(target))
        raise AssertionError(f"network access attempted: {target}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: refuse(addr))
    return attempts


@pytest.fixture
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "_LOADED", {})
    return tmp_path


# ------------------------------------------------------------------ estimate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        (" ", 1),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("x" * 400, 100),
        ("日本語のテキスト", 8),  # one token per CJK character
        ("한국어", 3),
        ("abcd日本", 3),
        ("Hallo, wie geht's?", 5),
    ],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_estimate_is_never_zero_and_monotone() -> None:
    words = "The quick brown fox jumps over the lazy dog. " * 20
    counts = [estimate_tokens(words[:n]) for n in range(1, len(words))]
    assert min(counts) >= 1
    assert counts == sorted(counts)
    assert 180 <= estimate_tokens(words) <= 260  # ~200 real tokens for this text


# ------------------------------------------------------------------ cache detection


def test_cache_dir_follows_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    assert tiktoken_cache_dir() == os.path.join(tempfile.gettempdir(), "data-gym-cache")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", "/gym")
    assert tiktoken_cache_dir() == "/gym"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/tik")
    assert tiktoken_cache_dir() == "/tik"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken: caching off, always download
    assert tiktoken_cache_dir() is None
    assert not encoding_is_cached("o200k_base")


def test_cache_path_is_sha1_of_url(tmp_path: Path) -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    expected = hashlib.sha1(url.encode()).hexdigest()
    assert cache_path(url, str(tmp_path)) == str(tmp_path / expected)


def test_cache_detection_checks_presence_and_hash(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"fake bpe file\n"
    url = "https://example.invalid/fake.tiktoken"
    monkeypatch.setitem(ENCODING_FILES, "fake", ((url, hashlib.sha256(content).hexdigest()),))
    path = Path(cache_path(url, str(cache_dir)))
    assert not encoding_is_cached("fake")  # absent
    path.write_bytes(b"truncated")
    assert not encoding_is_cached("fake")  # tiktoken would delete it and download again
    path.write_bytes(content)
    os.utime(path, ns=(1, 1))  # a different mtime, as a replaced file would have
    assert encoding_is_cached("fake")
    assert not encoding_is_cached("no-such-encoding")


def test_encoding_table_matches_installed_tiktoken() -> None:
    """The URLs and hashes must be the ones the installed tiktoken fetches and checks."""
    from tiktoken.model import MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING
    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    for name, files in ENCODING_FILES.items():
        constructor = openai_public.ENCODING_CONSTRUCTORS[name]
        source = inspect.getsource(constructor)
        if "= o200k_base()" in source:  # o200k_harmony reuses o200k_base's file
            source = inspect.getsource(openai_public.o200k_base)
        for url, sha256 in files:
            assert url in source, (name, url)
            assert sha256 in source, (name, sha256)
    # Every encoding a known chat model uses is covered (else it silently stays estimated).
    used = set(MODEL_TO_ENCODING.values()) | set(MODEL_PREFIX_TO_ENCODING.values())
    assert used <= set(ENCODING_FILES)


# ------------------------------------------------------------------ counting


def test_no_cache_gives_estimate_without_network(cache_dir: Path, no_network: list[str]) -> None:
    count, exact = openai_token_count("gpt-4o-mini", MESSAGES)
    assert not exact
    # 3 primer + 2 x (3 framing + 1 role) + estimates of the contents.
    assert count == 3 + 2 * 4 + estimate_tokens(MESSAGES[0][1]) + estimate_tokens(MESSAGES[1][1])
    assert no_network == []
    assert list(cache_dir.iterdir()) == []  # nothing fetched, nothing written


def test_bad_cache_file_is_left_alone(cache_dir: Path, no_network: list[str]) -> None:
    url, _ = ENCODING_FILES["o200k_base"][0]
    path = Path(cache_path(url, str(cache_dir)))
    path.write_bytes(b"corrupt")
    assert openai_token_count("gpt-4o", MESSAGES)[1] is False
    assert path.read_bytes() == b"corrupt"  # tiktoken never ran, so it did not delete it
    assert no_network == []


@pytest.mark.parametrize("model", ["gpt-4o", "llama3.1:8b", "claude-3-5-haiku", "ft:"])
def test_unknown_or_uncached_models_estimate(
    model: str, cache_dir: Path, no_network: list[str]
) -> None:
    assert openai_token_count(model, MESSAGES)[1] is False
    assert openai_token_count(model, [])[0] == 3
    assert no_network == []


def _byte_encoding() -> Any:
    """A real tiktoken Encoding with one token per byte, so counts are easy to check."""
    import tiktoken

    return tiktoken.Encoding(
        name="bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={"<|endoftext|>": 256},
    )


def test_exact_count_when_cached(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    import tiktoken

    content = b"stand-in for the real BPE file\n"
    url = "https://example.invalid/o200k_base.tiktoken"
    monkeypatch.setitem(ENCODING_FILES, "o200k_base", ((url, hashlib.sha256(content).hexdigest()),))
    Path(cache_path(url, str(cache_dir))).write_bytes(content)
    requested: list[str] = []

    def get_encoding(name: str) -> Any:
        requested.append(name)
        return _byte_encoding()

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    messages = [("system", "abc"), ("user", "hello <|endoftext|>")]
    count, exact = openai_token_count("gpt-4o-mini-2024-07-18", messages)
    assert exact
    # 3 primer + 2 x 3 framing + bytes of roles (6 + 4) + bytes of contents (3 + 19).
    assert count == 3 + 6 + 10 + 22
    # ft:gpt-4.1 models use o200k_base (tiktoken's own prefix table would say cl100k).
    assert openai_token_count("ft:gpt-4.1-mini-2025-04-14:org::x", messages) == (count, True)
    assert requested == ["o200k_base"]  # loaded once, then reused
    assert openai_token_count("gpt-3.5-turbo", messages)[1] is False  # cl100k not cached
    assert no_network == []


def test_real_encoding_if_cached_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_LOADED", {})
    if not encoding_is_cached("o200k_base"):
        pytest.skip("o200k_base is not in the local tiktoken cache")
    count, exact = openai_token_count("gpt-4o", [("user", "hello world")])
    assert (count, exact) == (3 + 3 + 1 + 2, True)
