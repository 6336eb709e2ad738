"""Prompts in the data's language: ``language:``, detection, built-in templates in
German and English, the English fallback, the generator language check, result keys."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from adaptlab.cli import cli as main
from adaptlab.core.errors import ConfigError
from adaptlab.core.progress import ProgressSink
from adaptlab.engine.project import Project
from adaptlab.engine.runner import Models, make_context, result_key
from adaptlab.prompts import PromptTemplate

# Written for these tests: short support requests, twelve a label, in each language.
GERMAN = {
    "billing": [
        "Warum wurde mir die Rechnung zweimal abgebucht?",
        "Ich brauche eine Kopie meiner letzten Rechnung.",
        "Die Mehrwertsteuer auf meiner Rechnung stimmt nicht.",
        "Meine Kreditkarte wurde abgelehnt, obwohl sie gültig ist.",
        "Wie ändere ich die Zahlungsart für mein Abonnement?",
        "Der Preis im Warenkorb war niedriger als auf der Rechnung.",
        "Können Sie mir die Gebühren für den Monat erklären?",
        "Ich möchte lieber per Lastschrift bezahlen.",
        "Bitte schicken Sie die Rechnung an unsere Buchhaltung.",
        "Warum kostet das Abonnement jetzt mehr als vorher?",
        "Die Zahlung ist fehlgeschlagen, was soll ich tun?",
        "Ich habe eine Mahnung bekommen, aber schon bezahlt.",
    ],
    "shipping": [
        "Mein Paket ist seit einer Woche unterwegs und kommt nicht an.",
        "Die Sendungsverfolgung zeigt seit Tagen nichts Neues.",
        "Das Paket wurde beschädigt zugestellt.",
        "Kann ich die Lieferadresse noch ändern?",
        "Der Zusteller hat das Paket beim Nachbarn abgegeben.",
        "Wann wird meine Bestellung verschickt?",
        "Die Lieferung hängt beim Zoll fest.",
        "Ich war nicht zu Hause, wo kann ich das Paket abholen?",
        "Es fehlt ein Artikel in meiner Lieferung.",
        "Welcher Paketdienst bringt meine Bestellung?",
        "Die Lieferzeit ist viel länger als angegeben.",
        "Das Paket ging an die falsche Adresse.",
    ],
}
ENGLISH = {
    "billing": [
        "Why was I charged twice for the same invoice?",
        "I need a copy of my last invoice please.",
        "The VAT on my invoice looks wrong.",
        "My credit card was declined although it is valid.",
        "How do I change the payment method for my subscription?",
        "The price at checkout was lower than on the invoice.",
        "Can you explain this month's fees to me?",
        "I would rather pay by direct debit.",
        "Please send the invoice to our accounting team.",
        "Why does the subscription cost more than before?",
        "The payment failed, what should I do now?",
        "I got a reminder but I already paid the bill.",
    ],
    "shipping": [
        "My parcel has been on its way for a week and has not arrived.",
        "The tracking page has shown nothing new for days.",
        "The parcel arrived damaged.",
        "Can I still change the delivery address?",
        "The courier left the parcel with a neighbour.",
        "When will my order be shipped?",
        "The delivery is stuck in customs.",
        "I was not at home, where can I pick up the parcel?",
        "One item is missing from my delivery.",
        "Which carrier is bringing my order?",
        "Delivery takes much longer than promised.",
        "The parcel went to the wrong address.",
    ],
}
ZS = {"name": "llm-zs", "strategy": "llm-zero-shot", "llm": "fake"}
MINE = {
    "name": "mine",
    "strategy": "llm-zero-shot",
    "llm": "fake",
    "params": {"template": "mine.j2"},
}
TFIDF = {"name": "tfidf", "strategy": "tfidf-lr"}
MY_TEMPLATE = '{% extends "classify.j2" %}{% block system %}Sort.{% endblock %}'


def _project(
    root: Path, data: dict[str, list[str]], *, language: str | None = None, **extra: Any
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    rows = [{"text": t, "label": label} for label, texts in data.items() for t in texts]
    (root / "data" / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "mine.j2").write_text(MY_TEMPLATE)
    cfg: dict[str, Any] = {
        "name": "lang",
        "data": {"path": "data/d.jsonl"},
        "labels": {"billing": "invoices and payments", "shipping": "parcels and delivery"},
        "llms": {"fake": {"backend": "fake", "name": "f", "answers": ["billing"]}},
        "candidates": [ZS, MINE, TFIDF],
        "evaluation": {"baseline": False, "latency_samples": 0},
    }
    if language is not None:
        cfg["language"] = language
    cfg.update(extra)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _strategy(project: Project, name: str) -> Any:
    cand = next(c for c in project.config.candidates if c.name == name)
    models = Models(project)
    try:
        strategy, _ = make_context(
            project, cand, project.root, models, ProgressSink(), with_llm=False
        )
    finally:
        models.close()
    return strategy


def _system(strategy: Any) -> str:
    variables = strategy.variables("Wo bleibt mein Paket?", [])
    return str(strategy.template.render(variables).parts["system"])


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _project(tmp_path_factory.mktemp("de") / "p", GERMAN)


# ---------------------------------------------------------------- which template


def test_german_data_gets_the_german_template_when_language_is_unset(german: Path) -> None:
    project = Project.load(german)
    lang = project.language()
    assert (lang.code, lang.source, lang.n) == ("de", "detected", 24)
    assert lang.share is not None and lang.share > 0.5
    strategy = _strategy(project, "llm-zs")
    assert strategy.template.language == "de"
    assert strategy.template.file.parent.name == "de"
    assert "Sie ordnen Texte" in _system(strategy)
    assert strategy.info["data_language"]["source"] == "detected"


def test_language_set_picks_the_template_whatever_the_data(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path / "p", ENGLISH, language="de"))
    assert (project.language().code, project.language().source) == ("de", "set")
    assert _strategy(project, "llm-zs").template.language == "de"
    # and the other way round: German data, language: en
    project = Project.load(_project(tmp_path / "q", GERMAN, language="EN"))
    assert project.config.language == "en"
    assert "careful text classifier" in _system(_strategy(project, "llm-zs"))


def test_english_data_gets_the_english_template(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path / "p", ENGLISH))
    assert (project.language().code, project.language().source) == ("en", "detected")
    strategy = _strategy(project, "llm-zs")
    assert strategy.template.version == PromptTemplate("classify").version
    assert "careful text classifier" in _system(strategy)


def test_a_language_without_templates_falls_back_to_english_with_a_note(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path / "p", ENGLISH, language="fr"))
    strategy = _strategy(project, "llm-zs")
    assert strategy.template.language == "en"
    notes = project.language_notes()
    assert notes[0][0] == "info" and "French (fr; set by language:" in notes[0][1]
    fallback = [line for kind, line in notes if kind == "warning"]
    assert len(fallback) == 1
    assert "no built-in prompt templates in French (fr)" in fallback[0]
    assert "classify.j2" in fallback[0] and "template: prompts/classify.j2" in fallback[0]


def test_the_users_own_template_is_never_replaced(german: Path) -> None:
    strategy = _strategy(Project.load(german), "mine")
    assert strategy.template.language is None
    assert strategy.template.file == (german / "mine.j2").resolve()
    assert _system(strategy) == "Sort."
    assert "template_language" not in strategy.info


# ---------------------------------------------------------------- the key


def test_the_result_key_changes_with_the_template_language_only(tmp_path: Path) -> None:
    def keys(language: str) -> dict[str, str]:
        project = Project.load(_project(tmp_path / language, GERMAN, language=language))
        split = project.split()
        return {c.name: result_key(project, c, split) for c in project.config.candidates}

    en, de, fr = keys("en"), keys("de"), keys("fr")
    assert en["llm-zs"] != de["llm-zs"]
    # the user's template and the TF-IDF baseline read no language
    assert en["mine"] == de["mine"] and en["tfidf"] == de["tfidf"]
    # French prompts with the English built-in: the same text, the same answers
    assert fr == en


# ---------------------------------------------------------------- refused values


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("xx", "'xx' is not an ISO 639-1 language code"),
        ("german", "did you mean 'de' (German)?"),
        ("de-DE", "did you mean 'de' (German)?"),
        ("deu", "is not an ISO 639-1 language code"),
        ("", "is not an ISO 639-1 language code"),
        (7, "bad value 7 for 'language'"),
    ],
)
def test_a_language_that_is_no_iso_639_1_code_is_refused(
    tmp_path: Path, value: Any, said: str
) -> None:
    root = _project(tmp_path / "p", ENGLISH, language=value)
    with pytest.raises(ConfigError) as err:
        Project.load(root)
    text = str(err.value)
    assert said in text and "'language'" in text
    assert err.value.line is not None
    assert "two-letter ISO 639-1 code such as de or en" in str(err.value.fix)


def test_an_unquoted_yaml_no_is_refused_with_the_quoting_fix(tmp_path: Path) -> None:
    root = _project(tmp_path / "p", ENGLISH)
    text = (root / "adaptlab.yaml").read_text()
    (root / "adaptlab.yaml").write_text(text + "language: no\n")  # YAML 1.1: a boolean
    with pytest.raises(ConfigError) as err:
        Project.load(root)
    assert "quote it: 'no'" in str(err.value.fix)


# ---------------------------------------------------------------- the generative model


def _gguf(path: Path, meta: dict[str, Any]) -> Path:
    """A GGUF v3 header (no tensors) with string and string-array metadata."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    body = b""
    for key, value in meta.items():
        if isinstance(value, list):
            items = b"".join(s(v) for v in value)
            body += s(key) + struct.pack("<IIQ", 9, 8, len(value)) + items
        else:
            body += s(key) + struct.pack("<I", 8) + s(value)
    body += s("tokenizer.ggml.model") + struct.pack("<I", 8) + s("gpt2")
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta) + 1) + body)
    return path


def test_the_generator_check_reads_gguf_metadata_cards_and_known_names(tmp_path: Path) -> None:
    from adaptlab.data.language import generator_languages

    gguf = _gguf(tmp_path / "m.gguf", {"general.basename": "tiny", "general.languages": ["en"]})
    assert generator_languages("tiny", gguf) == ({"en"}, "its GGUF metadata (general.languages)")
    folder = tmp_path / "qwen"
    folder.mkdir()
    # Qwen2.5's cards say `language: en`; its model_type says which family it is.
    (folder / "README.md").write_text("---\nlanguage:\n- en\n---\n# a model\n")
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    assert generator_languages(str(folder), folder) is not None
    assert generator_languages(str(folder), folder)[0] == {"multilingual"}  # type: ignore[index]
    (folder / "config.json").write_text('{"model_type": "unknown"}')
    assert generator_languages(str(folder), folder)[0] == {"en"}  # type: ignore[index]
    assert generator_languages("gpt-4o-mini", None)[0] == {"multilingual"}  # type: ignore[index]
    assert generator_languages("my-own-model", None) is None


def test_an_english_generator_on_german_data_is_warned_with_an_offline_fix(tmp_path: Path) -> None:
    gguf = _gguf(tmp_path / "m.gguf", {"general.basename": "tiny", "general.languages": ["en"]})
    llms = {"fake": {"backend": "hf", "name": str(gguf)}}
    project = Project.load(_project(tmp_path / "p", GERMAN, llms=llms))
    (issue,) = project.generator_language_issues()
    assert issue.severity == "warning" and issue.line is not None
    assert "the data is German (de; detected in" in issue.message
    assert "covers only English (en), per its GGUF metadata (general.languages)" in issue.message
    assert "llm 'fake'" in issue.message and "GGUF metadata" in issue.message
    fix = str(issue.fix)
    assert fix.startswith("point llms.fake.name in adaptlab.yaml at a multilingual model")
    assert "snapshot_download" in fix and "Qwen/Qwen2.5-0.5B-Instruct" in fix
    assert fix.endswith(".")
    # the same model on English data, or a model that covers German: no warning
    assert (
        Project.load(_project(tmp_path / "q", ENGLISH, llms=llms)).generator_language_issues() == []
    )
    multi = {
        "fake": {"backend": "openai", "name": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"}
    }
    assert (
        Project.load(_project(tmp_path / "r", GERMAN, llms=multi)).generator_language_issues() == []
    )


# ---------------------------------------------------------------- the commands


def test_run_dry_run_and_data_check_say_the_language(german: Path) -> None:
    runner = CliRunner()
    check = runner.invoke(main, ["data", "check", "-p", str(german)])
    assert check.exit_code == 0, check.output
    assert "prompt language: German (de; detected in" in check.output
    dry = runner.invoke(main, ["run", "--dry-run", "-p", str(german)])
    assert dry.exit_code == 0, dry.output
    assert "prompt language: German (de; detected in" in dry.output
    run = runner.invoke(main, ["run", "-p", str(german), "-c", "llm-zs"])
    assert run.exit_code == 0, run.output
    assert "prompt language: German (de; detected in" in run.output
    report = runner.invoke(main, ["report", "-p", str(german)])
    assert report.exit_code == 0, report.output
    page = (german / "reports" / "report.html").read_text()
    assert "Prompt language: data in German (de; detected in" in page
    assert "built-in template in German" in page
    assert "Sie ordnen Texte" in page  # the prompt as sent
