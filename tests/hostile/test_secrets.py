"""Issue 23, kind 1: a project or model folder never chooses where a secret goes.

A real HTTP server (:class:`RecordingServer`) records every request it receives and
whether any watched secret (the values of ``GITHUB_TOKEN``, ``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY`` set for the test) appears in its request line, headers or body.
An ``adaptlab.yaml`` or a model folder that names another variable together with that
server's URL must get no request carrying the value: ``run``, ``predict --model`` and
``serve --model`` stop before any request with an error naming the file and the key.
The kinds around it: the provider's own variable sent to a foreign URL (no key goes),
a variable in the keys file that is not bound to that URL, origins that differ by host,
scheme, port or case, the Anthropic backend, provider fine-tuning, ``serve --remote``,
a secret pasted into ``base_url``, a malformed ``send:`` section; and the cases that
must keep working (a bound key is sent; the provider's own key to its own endpoint).
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.backends import llm_key_var, load_llm
from adaptlab.config import LLMConfig
from adaptlab.core.errors import ConfigError
from adaptlab.core.urls import origin, url_problem
from adaptlab.engine.manifest import MANIFEST
from adaptlab.llm.types import ChatRequest, Message, PermanentError
from tests.conftest import run_cli
from tests.fakes.fake_finetune import FakeFinetuneServer, _FinetuneHandler
from tests.hostile.projects import llm_project, oracle
from tests.keyfile import bind_key

# Recognisable values: a test fails if one of them reaches a request it must not.
SECRETS = {
    "GITHUB_TOKEN": "ghp_userShellTokenNeverForFolders0042",
    "OPENAI_API_KEY": "sk-openai-userOwnKeyForApiOpenaiCom0042",
    "ANTHROPIC_API_KEY": "sk-ant-userOwnKeyForApiAnthropicCom0042",
}
IN_URL = "pw-pasted-into-the-url-0042"  # a secret written into a base_url
REQUEST = ChatRequest((Message("user", "my parcel never arrived"),))


# ---------------------------------------------------------------- the recording server


@dataclass(frozen=True)
class Seen:
    """One request: method, path (no query), and which watched secrets it carried."""

    method: str
    path: str
    carried: frozenset[str]


class _Recording(_FinetuneHandler):
    """Records every request before the fake answers it, chat and fine-tuning alike."""

    def _note(self, body: bytes) -> None:
        text = f"{self.requestline}\n{self.headers}".encode() + b"\n" + body
        owner = self.server.owner
        carried = frozenset(name for name, value in SECRETS.items() if value.encode() in text)
        if IN_URL.encode() in text:
            carried |= {"IN_URL"}
        with owner._lock:
            owner.seen.append(Seen(self.command, self.path.split("?")[0], carried))

    def do_GET(self) -> None:
        self._note(b"")
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.rfile = io.BytesIO(body)  # the fake reads the body again
        self._note(body)
        super().do_POST()


class RecordingServer(FakeFinetuneServer):
    """:class:`FakeFinetuneServer` (chat for both APIs, files, jobs) that keeps a
    :class:`Seen` for every request it receives."""

    handler_class = _Recording

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[Seen] = []

    def carrying(self) -> set[str]:
        """The watched secrets any request carried."""
        with self._lock:
            return set().union(*(s.carried for s in self.seen))


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    with RecordingServer(oracle) as srv:
        yield srv


@pytest.fixture(autouse=True)
def user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: RecordingServer) -> None:
    """The user's own secrets in the environment; an empty keys file; a fresh record."""
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADAPTLAB_KEYS_FILE", str(tmp_path / "keys.yaml"))
    with server._lock:
        server.seen.clear()


def _no_secret_in(root: Path, *texts: str) -> None:
    """No watched secret in ``texts`` (CLI output) nor in any file under ``root`` (the
    store, the report, the request log), compared as bytes."""
    for value in (*SECRETS.values(), IN_URL):
        for text in texts:
            assert value not in text
        for f in root.rglob("*"):
            if f.is_file():
                assert value.encode() not in f.read_bytes(), f


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def exported(server: RecordingServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generative model folder answered by ``server``, exported from a finished run
    (no key anywhere: the environment is emptied while it is made)."""
    base = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as mp:
        for var in (*SECRETS, "OPENAI_BASE_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("ADAPTLAB_KEYS_FILE", str(base / "none.yaml"))
        root = llm_project(base / "p", server.base_url)
        for args in (("run", "-p", root), ("export", "-p", root, "-c", "zero", base / "model")):
            out = run_cli(*map(str, args))
            assert out.exit_code == 0, out.output
    return base / "model"


def _hostile_folder(exported: Path, tmp_path: Path, **llm: Any) -> Path:
    """A copy of the export whose manifest's llm entry says what ``llm`` says."""
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["llm"].update(llm)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``uvicorn.run`` recorded instead of serving, so a load that wrongly succeeds
    shows up as a call rather than a server that never returns."""
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    return calls


@pytest.mark.parametrize("command", ["run", "predict --model", "serve --model"])
def test_a_folder_naming_another_variable_and_url_sends_no_request_carrying_it(
    command: str,
    cli: Any,
    tmp_path: Path,
    server: RecordingServer,
    exported: Path,
    no_uvicorn: list[Any],
) -> None:
    steal: dict[str, Any] = {"api_key_env": "GITHUB_TOKEN", "base_url": server.base_url}
    root = llm_project(tmp_path / "p", **steal)
    inputs = tmp_path / "in.txt"
    inputs.write_text("my parcel never arrived\n")
    folder = _hostile_folder(exported, tmp_path, **steal)
    if command == "run":
        result = cli("run", "-p", root)
        where = ["adaptlab.yaml", "llms.chat.api_key_env names GITHUB_TOKEN"]
    elif command == "predict --model":
        result = cli("predict", "--model", folder, inputs)
        where = [str(folder / MANIFEST), "llm.api_key_env names GITHUB_TOKEN"]
    else:
        result = cli("serve", "-p", root, "--model", f"m={folder}", "--no-auth", "--port", "0")
        # serve loads the project's own config first, so its adaptlab.yaml is named
        where = ["llms.chat.api_key_env names GITHUB_TOKEN"]
    text = result.error(
        *where,
        f"for http://127.0.0.1:{server.port}",
        "may not choose which secret is sent where",
        f"send: {{GITHUB_TOKEN: [http://127.0.0.1:{server.port}]}}",
    )
    assert server.seen == []  # refused before any request, not only before the key
    assert not no_uvicorn
    _no_secret_in(tmp_path, text)


def test_serve_refuses_the_folder_of_a_clean_project(
    cli: Any, tmp_path: Path, server: RecordingServer, exported: Path, no_uvicorn: list[Any]
) -> None:
    """``serve --model`` of a hostile folder next to a project that names no key."""
    root = llm_project(tmp_path / "p", server.base_url)
    folder = _hostile_folder(exported, tmp_path, api_key_env="GITHUB_TOKEN")
    text = cli("serve", "-p", root, "--model", f"m={folder}", "--no-auth", "--port", "0").error(
        str(folder / MANIFEST), "llm.api_key_env names GITHUB_TOKEN", "send:"
    )
    assert server.seen == [] and not no_uvicorn
    _no_secret_in(tmp_path, text)


# ---------------------------------------------------------------- which key goes where

U = "{base}"  # the server's OpenAI base URL, http://127.0.0.1:PORT/v1
R = "{root}"  # its root URL (Anthropic clients), http://127.0.0.1:PORT
P = "{port}"


@dataclass(frozen=True)
class Case:
    backend: str
    llm: dict[str, str]
    send: dict[str, list[str]]  # the keys file's send: section
    expect: str  # "refused", "no key" or the variable whose key must arrive
    env: dict[str, str] | None = None  # more of the user's environment
    in_file: dict[str, str] | None = None  # keys stored in the keys file


CASES = {
    # a variable of the folder's choosing
    "any-var+foreign-url": Case(
        "openai", {"api_key_env": "GITHUB_TOKEN", "base_url": U}, {}, "refused"
    ),
    "default-var-named+foreign-url": Case(
        "openai", {"api_key_env": "OPENAI_API_KEY", "base_url": U}, {}, "refused"
    ),
    "keys-file-var-unbound": Case(
        "openai",
        {"api_key_env": "FILE_TOKEN", "base_url": U},
        {},
        "refused",
        in_file={"FILE_TOKEN": SECRETS["GITHUB_TOKEN"]},
    ),
    "another-var-bound-here": Case(
        "openai", {"api_key_env": "GITHUB_TOKEN", "base_url": U}, {"AZURE_KEY": [R]}, "refused"
    ),
    "bound-to-other-port": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["http://127.0.0.1:1"]},
        "refused",
    ),
    "bound-to-default-port": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["http://127.0.0.1"]},
        "refused",
    ),
    "bound-to-https": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["https://127.0.0.1:" + P]},
        "refused",
    ),
    "bound-to-localhost-not-127": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["http://localhost:" + P]},
        "refused",
    ),
    "bound-to-a-longer-host": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["http://127.0.0.1.nip.io:" + P]},
        "refused",
    ),
    # the provider's own variable to a server of the folder's choosing: no key at all
    "default-var+foreign-url": Case("openai", {"base_url": U}, {}, "no key"),
    "default-var+user-base-url-elsewhere": Case(
        "openai", {"base_url": U}, {}, "no key", env={"OPENAI_BASE_URL": "https://api.example.com"}
    ),
    "bound-var-unset": Case(
        "openai", {"api_key_env": "UNSET_KEY", "base_url": U}, {"UNSET_KEY": [R]}, "no key"
    ),
    # what the user allowed
    "bound-var": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": [R]},
        "GITHUB_TOKEN",
    ),
    "bound-with-path-and-slash": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": [U + "/"]},
        "GITHUB_TOKEN",
    ),
    "bound-upper-case-scheme": Case(
        "openai",
        {"api_key_env": "GITHUB_TOKEN", "base_url": U},
        {"GITHUB_TOKEN": ["HTTP://127.0.0.1:" + P]},
        "GITHUB_TOKEN",
    ),
    "bound-from-the-keys-file": Case(
        "openai",
        {"api_key_env": "FILE_TOKEN", "base_url": U},
        {"FILE_TOKEN": [R]},
        "GITHUB_TOKEN",  # the value stored in the file is the watched one
        in_file={"FILE_TOKEN": SECRETS["GITHUB_TOKEN"]},
    ),
    "default-var-bound": Case("openai", {"base_url": U}, {"OPENAI_API_KEY": [R]}, "OPENAI_API_KEY"),
    "default-var+user-base-url": Case(
        "openai", {}, {}, "OPENAI_API_KEY", env={"OPENAI_BASE_URL": U}
    ),
    "default-var+base-url-equal-to-users": Case(
        "openai", {"base_url": U}, {}, "OPENAI_API_KEY", env={"OPENAI_BASE_URL": U}
    ),
    # the Anthropic backend
    "anthropic-any-var": Case(
        "anthropic", {"api_key_env": "GITHUB_TOKEN", "base_url": R}, {}, "refused"
    ),
    "anthropic-default-var+foreign-url": Case("anthropic", {"base_url": R}, {}, "no key"),
    "anthropic-bound": Case(
        "anthropic", {"base_url": R}, {"ANTHROPIC_API_KEY": [R]}, "ANTHROPIC_API_KEY"
    ),
    "anthropic-user-base-url": Case(
        "anthropic", {}, {}, "ANTHROPIC_API_KEY", env={"ANTHROPIC_BASE_URL": R}
    ),
}


def _fill(text: str, server: RecordingServer) -> str:
    return text.format(base=server.base_url, root=server.root_url, port=server.port)


def _setup(case: Case, server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> LLMConfig:
    for var, value in (case.env or {}).items():
        monkeypatch.setenv(var, _fill(value, server))
    for var, value in (case.in_file or {}).items():
        bind_key(var, key=value)
    for var, urls in case.send.items():
        bind_key(var, *(_fill(u, server) for u in urls))
    llm = {k: _fill(v, server) for k, v in case.llm.items()}
    return LLMConfig.model_validate({"backend": case.backend, "name": "m", **llm})


def _ask(config: LLMConfig) -> Any:
    backend = load_llm(config)

    async def go() -> Any:
        try:
            return await backend.execute(REQUEST)
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("name", list(CASES))
def test_a_key_goes_only_where_the_user_bound_it(
    name: str, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    config = _setup(case, server, monkeypatch)
    if case.expect == "refused":
        with pytest.raises(ConfigError) as err:
            _ask(config)
        text = str(err.value)
        assert f"names {config.api_key_env} for http://127.0.0.1:{server.port}" in text
        assert "may not choose which secret is sent where" in text
        assert f"{config.api_key_env}: [http://127.0.0.1:{server.port}]" in (err.value.fix or "")
        assert server.seen == []
        assert not any(v in text for v in SECRETS.values())
        return
    assert _ask(config).text
    assert len(server.seen) == 1
    want = set() if case.expect == "no key" else {case.expect}
    assert server.carrying() == want


def test_a_refused_key_says_how_to_bind_it(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that needs a key answers 401 to the key-less request: the fix says how
    to let the user's key go there, naming the exact origin."""
    for backend, url, var in (
        ("openai", "{base}", "OPENAI_API_KEY"),
        ("anthropic", "{root}", "ANTHROPIC_API_KEY"),
    ):
        server.faults = lambda call: "401"
        try:
            config = LLMConfig(backend=backend, name="m", base_url=_fill(url, server))
            with pytest.raises(PermanentError) as err:
                _ask(config)
        finally:
            server.faults = None
        fix = err.value.fix or ""
        assert "sent no key" in fix and f"send: {{{var}: [http://127.0.0.1:{server.port}]}}" in fix
        assert not any(v in f"{err.value} {fix}" for v in SECRETS.values())
    assert server.carrying() == set()


@pytest.mark.parametrize(
    ("binding", "url", "same"),
    [
        ("https://a.com", "https://a.com/v1", True),
        ("https://a.com", "https://A.COM:443/v1/", True),
        ("HTTPS://a.com:443/", "https://a.com", True),
        ("http://a.com", "http://a.com:80/v1", True),
        ("http://[::1]:8000", "http://[0:0:0:0:0:0:0:1]:8000/v1", True),
        ("https://a.com", "https://a.com.evil.org", False),
        ("https://a.com", "https://evil.org/a.com", False),
        ("https://a.com", "https://evil-a.com", False),
        ("https://a.com", "http://a.com", False),
        ("https://a.com", "https://a.com:8443", False),
        ("https://a.com", "https://a.com.", False),
        ("https://a.com", "https://b.a.com", False),
        ("http://127.0.0.1:8000", "http://localhost:8000", False),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001", False),
    ],
)
def test_bindings_compare_whole_origins(
    binding: str, url: str, same: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (origin(binding) == origin(url)) is same
    bind_key("AZURE_KEY", binding)
    config = LLMConfig(backend="openai", name="m", base_url=url, api_key_env="AZURE_KEY")
    if same:
        assert llm_key_var(config) == "AZURE_KEY"
    else:
        with pytest.raises(ConfigError, match="may not choose which secret"):
            llm_key_var(config)


@pytest.mark.parametrize(
    ("backend", "base_url"),
    [
        ("openai", None),
        ("openai", "https://api.openai.com/v1"),
        ("openai", "https://API.openai.com:443"),
        ("anthropic", None),
        ("anthropic", "https://api.anthropic.com"),
    ],
)
def test_the_providers_own_key_goes_to_its_own_endpoint(backend: str, base_url: str | None) -> None:
    """No binding needed; the key is found, never a foreign one (no request is made)."""
    config = LLMConfig(backend=backend, name="m", base_url=base_url)
    var = llm_key_var(config)
    assert var == f"{backend.upper()}_API_KEY"
    assert load_llm(config)._api_key == SECRETS[var]


# ---------------------------------------------------------------- a secret in the URL

BAD_URLS = {
    "userinfo": "http://user:{secret}@127.0.0.1:{port}/v1",
    "user-only": "http://{secret}@127.0.0.1:{port}/v1",
    "userinfo-upper-scheme": "HTTP://u:{secret}@127.0.0.1:{port}/v1",
    "query-key": "http://127.0.0.1:{port}/v1?key={secret}",
    "query-api-key": "http://127.0.0.1:{port}/v1?api-key={secret}",
    "query-empty": "http://127.0.0.1:{port}/v1?",
    "fragment": "http://127.0.0.1:{port}/v1#{secret}",
    "fragment-hides-host": "http://evil.example#@127.0.0.1:{port}/v1",
    "newline-in-host": "http://127.0.0.1\n.evil.example:{port}/v1",
    "tab-in-host": "http://127.0.\t0.1:{port}/v1",
    "crlf-header": "http://127.0.0.1:{port}/v1\r\nAuthorization: Bearer {secret}",
    "leading-space": " http://127.0.0.1:{port}/v1",
    "trailing-space": "http://127.0.0.1:{port}/v1 ",
    "zero-width-space": "http://127.0.0.1\u200b:{port}/v1",
    "backslash-userinfo": "http://127.0.0.1:{port}\\@evil.example/v1",
    "percent-in-host": "http://127.0.0.1%2eevil.example:{port}/v1",
    "non-ascii-host": "http://\u0430pi.openai.com/v1",
    "no-scheme": "127.0.0.1:{port}/v1",
    "ftp": "ftp://127.0.0.1:{port}/v1",
    "no-host": "http:///v1",
    "port-zero": "http://127.0.0.1:0/v1",
    "port-too-big": "http://127.0.0.1:99999/v1",
    "empty": "",
}


def _bad(name: str, server: RecordingServer) -> str:
    return BAD_URLS[name].format(secret=IN_URL, port=server.port)


@pytest.mark.parametrize("name", list(BAD_URLS))
def test_a_base_url_with_a_secret_or_a_trick_is_refused_in_adaptlab_yaml(
    name: str, cli: Any, tmp_path: Path, server: RecordingServer
) -> None:
    root = llm_project(tmp_path / "p", _bad(name, server))
    # A carriage return is refused earlier, by the YAML reader, with its line.
    says = "control character U+000D" if "\r" in BAD_URLS[name] else "'llms.chat.base_url'"
    text = cli("run", "-p", root).error("adaptlab.yaml", says)
    assert server.seen == []
    _no_secret_in(tmp_path / "p" / ".adaptlab", text)
    assert IN_URL not in text


@pytest.mark.parametrize("name", ["userinfo", "query-key", "fragment", "crlf-header"])
def test_a_base_url_with_a_secret_is_refused_in_a_model_folder(
    name: str, cli: Any, tmp_path: Path, server: RecordingServer, exported: Path
) -> None:
    folder = _hostile_folder(exported, tmp_path, base_url=_bad(name, server))
    inputs = tmp_path / "in.txt"
    inputs.write_text("my parcel never arrived\n")
    text = cli("predict", "--model", folder, inputs).error(str(folder / MANIFEST), "base_url")
    assert server.seen == [] and IN_URL not in text


@pytest.mark.parametrize("name", ["userinfo", "query-key", "fragment", "newline-in-host"])
def test_serve_remote_refuses_a_secret_in_its_url(
    name: str, cli: Any, tmp_path: Path, server: RecordingServer, no_uvicorn: list[Any]
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    spec = f"r={_bad(name, server)}@m"
    text = cli("serve", "-p", root, "--remote", spec, "--no-auth", "--port", "0").error("--remote")
    assert IN_URL not in text and server.seen == [] and not no_uvicorn


def test_every_refused_url_names_no_part_of_itself() -> None:
    for name, url in BAD_URLS.items():
        problem = url_problem(url.format(secret=IN_URL, port=8000))
        assert problem is not None, name
        assert IN_URL not in problem.reason + problem.fix


# ---------------------------------------------------------------- the keys file itself


@pytest.mark.parametrize(
    ("section", "says"),
    [
        (["http://127.0.0.1:8000"], "'send:' must map variable names"),
        ({"AZURE_KEY": 7}, "'send: AZURE_KEY' must be a list"),
        ({"AZURE_KEY": [f"http://u:{IN_URL}@127.0.0.1:8000"]}, "send.AZURE_KEY[0] carries"),
        ({"AZURE_KEY": [f"http://127.0.0.1:8000/?k={IN_URL}"]}, "send.AZURE_KEY[0] carries"),
        ({"AZURE_KEY": ["127.0.0.1:8000"]}, "send.AZURE_KEY[0] must start with http"),
    ],
)
def test_a_malformed_send_section_is_refused_with_the_keys_file(
    section: Any, says: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"send": section}))
    keys.chmod(0o600)
    config = LLMConfig(
        backend="openai", name="m", base_url="http://127.0.0.1:8000", api_key_env="AZURE_KEY"
    )
    with pytest.raises(ConfigError) as err:
        llm_key_var(config)
    assert str(keys) in str(err.value) and says in str(err.value) and err.value.fix
    assert IN_URL not in str(err.value)


# ---------------------------------------------------------------- fine-tuning and --remote


@pytest.mark.parametrize(
    ("llm", "send", "carried"),
    [
        ({"api_key_env": "GITHUB_TOKEN"}, (), None),
        ({}, (), set()),
        ({"api_key_env": "GITHUB_TOKEN"}, ("GITHUB_TOKEN",), {"GITHUB_TOKEN"}),
        ({}, ("OPENAI_API_KEY",), {"OPENAI_API_KEY"}),
    ],
    ids=["any-var-refused", "default-var-no-key", "bound-var-sent", "default-bound-sent"],
)
def test_provider_fine_tuning_sends_keys_by_the_same_rule(
    llm: dict[str, Any], send: tuple[str, ...], carried: set[str] | None, server: RecordingServer
) -> None:
    from adaptlab.train.provider import OpenAIJobs

    for var in send:
        bind_key(var, server.root_url)
    config = LLMConfig(backend="openai", name="gpt-4o-mini", base_url=server.base_url, **llm)
    if carried is None:
        with pytest.raises(ConfigError, match="names GITHUB_TOKEN for"):
            OpenAIJobs.for_llm(config)
        assert server.seen == []
        return
    jobs = OpenAIJobs.for_llm(config)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "billing"}]
    assert jobs.upload(json.dumps({"messages": chat}).encode() + b"\n", "train.jsonl")
    assert [s.method for s in server.seen] == ["POST"]
    assert server.carrying() == carried


@pytest.mark.parametrize("bound", [False, True], ids=["no-key", "bound"])
def test_serve_remote_sends_the_users_key_only_where_bound(
    bound: bool, server: RecordingServer
) -> None:
    from adaptlab.serve.remote import parse_remote, remote_model

    if bound:
        bind_key("OPENAI_API_KEY", server.root_url)
    name, url, model = parse_remote(f"r={server.base_url}@gpt-4o-mini")
    (pred,) = remote_model(name, url, model).predict(["my parcel never arrived"])
    assert pred.status == "ok"
    assert server.carrying() == ({"OPENAI_API_KEY"} if bound else set())


# ---------------------------------------------------------------- nothing written


@pytest.mark.parametrize("bound", [False, True], ids=["no-key", "bound"])
def test_no_secret_reaches_the_output_the_store_or_the_report(
    bound: bool, cli: Any, tmp_path: Path, server: RecordingServer
) -> None:
    """A run that may go ahead (the provider's key withheld from a foreign server, or
    a key the user bound to it) writes no secret anywhere."""
    llm: dict[str, Any] = {"api_key_env": "GITHUB_TOKEN"} if bound else {}
    if bound:
        bind_key("GITHUB_TOKEN", server.base_url)
    root = llm_project(tmp_path / "p", server.base_url, **llm)
    out = [cli("run", "-p", root).ok(), cli("report", "-p", root).ok()]
    assert server.seen and server.carrying() == ({"GITHUB_TOKEN"} if bound else set())
    assert (root / ".adaptlab" / "runs.db").is_file()
    assert any(f.suffix == ".html" for f in root.rglob("*"))
    _no_secret_in(root, *out)
