"""A project folder must not run code, read files outside itself or exhaust memory.

Templates: every way out of Jinja that a hostile ``adaptlab.yaml`` + ``.j2`` could
try, through ``adaptlab prompt render`` (and one through ``run``). Checkpoints: a
crafted or broken ``last.pt``/``best.pt`` and links in the checkpoint folder, through
``adaptlab run`` of a fine-tune. A marker file shows whether a payload ran.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import base_config, write_project

# ---------------------------------------------------------------- templates


def _prompt_project(root: Path, template: str, source: str | None = None) -> Path:
    cfg = base_config(
        llms={"chat": {"backend": "openai", "name": "m", "base_url": "http://127.0.0.1:9/v1"}},
        candidates=[{"name": "p", "strategy": "prompt", "llm": "chat",
                     "params": {"template": template}}],
    )  # fmt: skip
    write_project(root, config=cfg)
    if source is not None:
        (root / template).parent.mkdir(parents=True, exist_ok=True)
        (root / template).write_text(source)
    return root


def _marker_cmd(marker: Path) -> str:
    return f"touch {marker}"


ESCAPES = {
    "cycler": "{{ cycler.__init__.__globals__.os.system('CMD') }}",
    "joiner": "{{ joiner.__init__.__globals__.os.system('CMD') }}",
    "namespace": "{{ namespace.__init__.__globals__.os.system('CMD') }}",
    "range-self": "{{ range.__self__.__class__ }}",
    "str-mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "self-globals": "{{ self.__init__.__globals__.os.system('CMD') }}",
    "labels-class": "{{ labels.__class__.__init__.__globals__ }}",
    "format-attr": "{{ '{0.__class__.__mro__}'.format(input) }}",
    "attr-filter": "{{ (cycler|attr('__init__')).__globals__.os.system('CMD') }}",
    "mutation": "{{ labels.clear() }}",
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_template_cannot_reach_python(cli: Any, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    body = ESCAPES[name].replace("CMD", _marker_cmd(marker))
    root = _prompt_project(tmp_path / "p", "t.j2", f"{{% block system %}}{body}{{% endblock %}}")
    text = cli("prompt", "render", "-p", root, "-c", "p").error("t.j2", "templates may not")
    assert "unsafe template" in text
    assert not marker.exists()


@pytest.mark.parametrize("name", ["lipsum", "config", "request", "os", "__builtins__"])
def test_template_globals_beyond_jinja_are_absent(cli: Any, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    body = f"{{{{ {name}.__globals__['os'].system('{_marker_cmd(marker)}') }}}}"
    root = _prompt_project(tmp_path / "p", "t.j2", f"{{% block system %}}{body}{{% endblock %}}")
    cli("prompt", "render", "-p", root, "-c", "p").error("t.j2")
    assert not marker.exists()


def test_the_issue_template_runs_nothing_during_run(cli: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = f"{{{{ cycler.__init__.__globals__.os.system('{_marker_cmd(marker)}') }}}}"
    root = _prompt_project(tmp_path / "p", "t.j2", f"{{% block system %}}{body}{{% endblock %}}")
    cli("run", "-p", root).error("t.j2", "templates may not access")
    assert not marker.exists()


@pytest.mark.parametrize(
    "ref",
    ["{% include '/etc/passwd' %}", "{% include '../secret.txt' %}",
     "{% import '/etc/hostname' as h %}", "{% include 'sub/../../secret.txt' %}"],
)  # fmt: skip
def test_includes_stay_in_the_template_folder(cli: Any, tmp_path: Path, ref: str) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    root = _prompt_project(tmp_path / "p", "t.j2", f"{{% block system %}}{ref}{{% endblock %}}")
    result = cli("prompt", "render", "-p", root, "-c", "p")
    result.error("t.j2")
    assert "TOP SECRET" not in result.text and "root:" not in result.text


def test_extends_cannot_climb_out(cli: Any, tmp_path: Path) -> None:
    root = _prompt_project(tmp_path / "p", "prompts/t.j2", "{% extends '../../../etc/passwd' %}")
    cli("prompt", "render", "-p", root, "-c", "p").error("t.j2", "..")


def test_a_template_in_the_parent_folder_reads_nothing_there(cli: Any, tmp_path: Path) -> None:
    # prompts/t.j2 may not include the project's own files above its folder either.
    body = "{% block system %}{% include 'adaptlab.yaml' %}{% endblock %}"
    root = _prompt_project(tmp_path / "p", "prompts/t.j2", body)
    cli("prompt", "render", "-p", root, "-c", "p").error("adaptlab.yaml", "not found")


@pytest.mark.parametrize("template", ["../outside.j2", "../../outside.j2", "/etc/passwd"])
def test_template_path_outside_the_project(cli: Any, tmp_path: Path, template: str) -> None:
    (tmp_path / "outside.j2").write_text("{% block system %}outside{% endblock %}")
    root = _prompt_project(tmp_path / "a" / "p", template)
    result = cli("prompt", "render", "-p", root, "-c", "p")
    result.error("outside")
    assert "root:" not in result.text


def test_template_link_leading_outside(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "secret.j2").write_text("{% block system %}TOP SECRET{% endblock %}")
    root = _prompt_project(tmp_path / "p", "t.j2")
    (root / "t.j2").symlink_to(tmp_path / "secret.j2")
    result = cli("prompt", "render", "-p", root, "-c", "p")
    result.error("outside the project")
    assert "TOP SECRET" not in result.text


def test_included_link_leading_outside(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    root = _prompt_project(tmp_path / "p", "t.j2",
                           "{% block system %}{% include 'inc.j2' %}{% endblock %}")  # fmt: skip
    (root / "inc.j2").symlink_to(tmp_path / "secret.txt")
    result = cli("prompt", "render", "-p", root, "-c", "p")
    result.error("inc.j2", "links are not followed")
    assert "TOP SECRET" not in result.text


def test_template_that_is_a_fifo(cli: Any, tmp_path: Path) -> None:
    root = _prompt_project(tmp_path / "p", "t.j2")
    os.mkfifo(root / "t.j2")  # reading it would block forever
    cli("prompt", "render", "-p", root, "-c", "p").error("t.j2", "not found")


@pytest.mark.parametrize(
    ("content", "needle"), [(b"x" * 1_100_000, "too large"), (b"\xff\xfe\x00garbage", "utf-8")]
)
def test_included_template_too_large_or_not_text(
    cli: Any, tmp_path: Path, content: bytes, needle: str
) -> None:
    body = "{% block system %}{% include 'inc.j2' %}{% endblock %}"
    root = _prompt_project(tmp_path / "p", "t.j2", body)
    (root / "inc.j2").write_bytes(content)
    cli("prompt", "render", "-p", root, "-c", "p").error("inc.j2", needle)


BOMBS = {
    "range": ("{% for i in range(10**9) %}x{% endfor %}", "loop over more than"),
    "nested-range": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loop over more than",
    ),
    "nested-string-loops": (
        "{% for a in 'x' * 4000000 %}{% for b in 'x' * 4000000 %}{% endfor %}{% endfor %}",
        "loop more than",
    ),
    "str-mul": ("{{ 'x' * 10**10 }}", "over 4,000,000 characters"),
    "list-mul": ("{{ (['x' * 1000] * 100000)|length }}", "over 4,000,000 characters"),
    "pow": ("{{ 2 ** (10 ** 9) }}", "numbers that large"),
    "format-width": ("{{ '{:>9999999999}'.format(1) }}", "size or count"),
    "format-nested": ("{{ '{:>{w}}'.format(1, w=10**10) }}", "size or count"),
    "percent-width": ("{{ '%9999999999d' % 1 }}", "size or count"),
    "percent-star": ("{{ '%*d' % (10**10, 1) }}", "size or count"),
    "center-filter": ("{{ 'x'|center(10**10) }}", "size or count"),
    "ljust-method": ("{{ 'x'.ljust(10**10) }}", "size or count"),
    "replace": ("{{ ('x' * 100000)|replace('x', 'y' * 1000) }}", "over 4,000,000 characters"),
    "join": ("{{ (['x' * 100000] * 100)|join }}", "over 4,000,000 characters"),
    "concat-doubling": (
        "{% set ns = namespace(a='xxxxxxxxxx') %}{% for i in range(60) %}"
        "{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a|length }}",
        "over 4,000,000 characters",
    ),
    "output": ("{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}", "render a part over"),
    "macro-recursion": (
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "recursion",
    ),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_template_resource_bombs_stop_quickly(cli: Any, tmp_path: Path, name: str) -> None:
    body, needle = BOMBS[name]
    root = _prompt_project(tmp_path / "p", "t.j2", f"{{% block system %}}{body}{{% endblock %}}")
    cli("prompt", "render", "-p", root, "-c", "p").error("t.j2", needle)


def test_self_including_template(cli: Any, tmp_path: Path) -> None:
    root = _prompt_project(tmp_path / "p", "t.j2",
                           "{% block system %}{% include 't.j2' %}{% endblock %}")  # fmt: skip
    cli("prompt", "render", "-p", root, "-c", "p").error("t.j2", "recursion")


def test_sandboxed_template_still_renders_what_prompts_need(cli: Any, tmp_path: Path) -> None:
    source = (
        '{% extends "classify.j2" %}{% block system %}{{ "-" * 3 }} {{ "%03d" % 7 }} '
        "{{ range(3)|join(',') }} {{ labels|length }} {{ '{:>4}'.format('ab') }}"
        "{% endblock %}"
    )
    root = _prompt_project(tmp_path / "p", "prompts/t.j2", source)
    result = cli("prompt", "render", "-p", root, "-c", "p")
    result.ok()
    assert "--- 007 0,1,2 6   ab" in result.stdout
    assert "Classify the input" in result.stdout


# ---------------------------------------------------------------- checkpoints


class _Payload:
    """Unpickling this runs a shell command (what a crafted last.pt would hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _finetune_project(root: Path) -> tuple[Path, Path]:
    """A tiny fine-tune project and its checkpoint folder (by its result key)."""
    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import result_key

    cfg = base_config(
        candidates=[{"name": "ft", "strategy": "finetune",
                     "params": {"epochs": 1, "batch_size": 8, "save_model": False}}]
    )  # fmt: skip
    cfg["evaluation"] = {"latency_samples": 1, "bootstrap_resamples": 100}
    write_project(root, config=cfg)
    project = Project.load(root)
    workdir = project.checkpoint_dir(
        result_key(project, project.config.candidates[0], project.split())
    )
    workdir.mkdir(parents=True)
    return root, workdir


def _stored_info(root: Path) -> str:
    import sqlite3

    with sqlite3.connect(root / ".adaptlab" / "runs.db") as conn:
        return str(conn.execute("SELECT info_json FROM results").fetchone()[0])


def _torch_file(obj: Any) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _pickle_bomb(marker: Path) -> bytes:
    return _torch_file({"model": _Payload(marker)})


CHECKPOINTS: dict[str, Callable[[Path], bytes]] = {
    "torch-pickle-payload": lambda m: _pickle_bomb(m),
    "raw-pickle-payload": lambda m: pickle.dumps(_Payload(m)),
    "random-bytes": lambda m: os.urandom(4096),
    "empty": lambda m: b"",
    "truncated": lambda m: _torch_file({"model": {"w": __import__("torch").zeros(1000)}})[:700],
    "wrong-structure": lambda m: _torch_file({"model": {"w": __import__("torch").zeros(3)}}),
    "a-list": lambda m: _torch_file([1, 2, 3]),
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_bad_resume_checkpoint_is_discarded(cli: Any, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    root, workdir = _finetune_project(tmp_path / "p")
    payload = CHECKPOINTS[name](marker)
    (workdir / "last.pt").write_bytes(payload)
    (workdir / "best.pt").write_bytes(payload)
    text = cli("run", "-p", root).ok()
    assert not marker.exists(), "a checkpoint ran code"
    assert "checkpoint discarded" in text and "starts from scratch" in text
    info = _stored_info(root)
    assert "checkpoint_discarded" in info and "resumed_from_epoch" not in info


def test_checkpoint_links_are_not_read_or_written_through(cli: Any, tmp_path: Path) -> None:
    root, workdir = _finetune_project(tmp_path / "p")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (workdir / "last.pt").symlink_to(outside)
    (workdir / "best.pt").symlink_to(outside)
    (workdir / "last.tmp").symlink_to(outside)  # torch.save would write through it
    (workdir / "best.tmp").symlink_to(outside)
    text = cli("run", "-p", root).ok()
    assert "not a regular file" in text
    assert outside.read_text() == "keep me"
    assert not (workdir / "last.pt").exists()  # the result is stored: resume files gone


def test_checkpoint_folder_that_is_a_link(cli: Any, tmp_path: Path) -> None:
    root, workdir = _finetune_project(tmp_path / "p")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workdir.rmdir()
    workdir.symlink_to(elsewhere)
    cli("run", "-p", root).error("link", "rm ")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.timeout(300)  # three fine-tunes: the hang guard's 120 s is too short on 2 busy cores
def test_checkpoint_failing_half_way_leaves_a_clean_start(backend: Any, tmp_path: Path) -> None:
    """One that passes every check but fails while applied: nothing of it survives."""
    import torch

    from adaptlab.data import Example
    from adaptlab.strategies import StrategyContext, get_strategy

    labels = {"a": "about a", "b": "about b", "c": "about c"}
    words = {"a": "invoice charge", "b": "parcel delivery", "c": "password login"}
    rows = [Example(f"{words[lab]} number {i}", lab, "d.jsonl", i) for i in range(30)
            for lab in labels]  # fmt: skip
    train, val, test = rows[:60], rows[60:75], [ex.text for ex in rows[75:]]

    def fit(workdir: Path, epochs: int) -> Any:
        cls = get_strategy("finetune")
        opts = cls.Options.model_validate({"epochs": epochs, "patience": 5, "batch_size": 8,
                                           "save_model": False})  # fmt: skip
        workdir.mkdir(exist_ok=True)
        strategy = cls(opts, StrategyContext(backend=backend, labels=labels, seed=0,
                                             workdir=workdir))  # fmt: skip
        strategy.fit(train, val)
        return strategy

    clean = fit(tmp_path / "clean", 2)
    fit(tmp_path / "foreign", 1)  # leaves last.pt and best.pt of a finished epoch
    last = tmp_path / "foreign" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["generator"] = torch.zeros(3, dtype=torch.uint8)  # the type is right, the size not
    torch.save(ckpt, last)
    again = fit(tmp_path / "foreign", 2)
    assert "RuntimeError" in str(again.info["checkpoint_discarded"])  # failed while applied
    assert "resumed_from_epoch" not in again.info
    assert again.curves == clean.curves
    assert [(p.label, p.score) for p in again.predict(test)] == [
        (p.label, p.score) for p in clean.predict(test)
    ]
