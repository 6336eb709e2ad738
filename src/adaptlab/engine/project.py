"""A project folder: ``adaptlab.yaml``, the data, and what runs leave behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.backends.gguf import gguf_source
from adaptlab.backends.sentence_transformers import resolve_model_path
from adaptlab.config import CONFIG_FILE, ProjectConfig, key_line
from adaptlab.core.errors import AdaptlabError, ConfigError, Issue
from adaptlab.core.languages import language_name
from adaptlab.data import DataReport, Example, Split, check_examples, load_examples
from adaptlab.data.language import (
    DataLanguage,
    data_language,
    generator_language_warning,
    generator_languages,
    language_warning,
)
from adaptlab.data.split import split_examples
from adaptlab.engine.validate import load_config
from adaptlab.prompts import template_language
from adaptlab.store.files import os_error
from adaptlab.store.location import store_exists, store_target


@dataclass
class Project:
    root: Path
    config: ProjectConfig
    # read once per command: `data check` validates and then splits the same files
    _data: tuple[list[Example], list[Example] | None] | None = field(
        default=None, repr=False, compare=False
    )
    _language: DataLanguage | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, root: str | Path = ".") -> Project:
        root = Path(root).resolve()
        return cls(root=root, config=load_config(root / CONFIG_FILE))

    # where things live ------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / ".adaptlab"

    @property
    def store_path(self) -> Path:
        """The project's own SQLite store (used unless :attr:`store` names PostgreSQL)."""
        return self.state_dir / "runs.db"

    @property
    def store(self) -> Path | str:
        """The run store to open: ``ADAPTLAB_STORE_URL``, else ``store:`` of adaptlab.yaml,
        else :attr:`store_path`; a PostgreSQL URL or the SQLite file. Raises
        :class:`~adaptlab.store.files.StoreError` for a variable that is no PostgreSQL URL."""
        return store_target(self.store_path, self.config.store)

    @property
    def has_store(self) -> bool:
        """Whether :attr:`store` is there to read (a SQLite file is never created by reading)."""
        return store_exists(self.store)

    @property
    def llm_cache_path(self) -> Path:
        return self.state_dir / "llm_cache.db"

    @property
    def run_lock_path(self) -> Path:
        return self.state_dir / "run.lock"

    def prepare_state(self) -> None:
        """Create ``.adaptlab``, or say exactly why it cannot be (a file there, no rights)."""

        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, "the project's state folder") from exc

    @property
    def splits_dir(self) -> Path:
        return self.state_dir / "splits"

    def checkpoint_dir(self, key: str) -> Path:
        return self.state_dir / "checkpoints" / key

    @property
    def report_path(self) -> Path:
        return self.root / "reports" / "report.html"

    # data ---------------------------------------------------------------
    def _load(self, rel: str, key: str) -> list[Example]:
        d, schema = self.config.data, self.config.schema_
        if not (self.root / rel).exists():
            cfg = self.root / CONFIG_FILE
            raise ConfigError(
                f"data.{key} points to '{rel}', which does not exist",
                file=cfg,
                line=key_line(cfg, "data", key),
                fix="give a path relative to the project folder, e.g. data/examples.jsonl",
            )
        return load_examples(
            self.root / rel,
            input_field=d.input_field,
            label_field=d.label_field,
            fmt=d.format,
            encoding=d.encoding,
            delimiter=d.delimiter,
            max_file_mb=d.max_file_mb,
            task=self.config.task,
            schema=schema if isinstance(schema, dict) else None,
            sources_field=d.sources_field,
        )

    def load_data(self) -> tuple[list[Example], list[Example] | None]:
        """The examples and, when ``data.test_path`` is set, the user's own holdout."""
        if self._data is None:
            examples = self._load(self.config.data.path, "path")
            test_path = self.config.data.test_path
            test = self._load(test_path, "test_path") if test_path else None
            self._data = (examples, test)
        return self._data

    def check_data(self, *, language: bool = True) -> DataReport:
        """Every data check; ``language=False`` leaves out the (warning-only) language guess."""
        examples, test = self.load_data()
        report = check_examples(
            examples,
            list(self.config.labels),
            test=test or (),
            conflicts=self.config.data.conflicts,
            task=self.config.task,
        )
        found = self.language_issue([ex.text for ex in examples]) if language else None
        if found is not None:
            report.issues.append(found)
        if language:
            report.issues.extend(self.generator_language_issues())
        return report

    def language(self) -> DataLanguage:
        """The language of the prompts: ``language:`` when set, else detected from the
        examples (all of ``data.path``, so ``data check``, a dry run and a run agree)."""
        if self._language is None:
            configured = self.config.language
            texts = [] if configured else [ex.text for ex in self.load_data()[0]]
            self._language = data_language(configured, texts)
        return self._language

    def language_notes(self, *, generators: bool = True) -> list[tuple[str, str]]:
        """What ``run`` and ``run --dry-run`` say about the prompts' language, as (kind,
        line) with kind "info" or "warning": the language and where it came from, the
        English fallback for a language without built-in templates (with how to write
        one's own), and (``generators``) each generative model that does not cover it.
        Empty when no candidate prompts a model."""
        if not any(c.llm is not None for c in self.config.candidates):
            return []
        lang = self.language()
        used, fallback = template_language(lang.code)
        lines = [
            (
                "info",
                f"prompt language: {lang.describe()}; built-in templates in {language_name(used)}",
            )
        ]
        if fallback is not None:
            lines.append(("warning", fallback))
        if generators:
            lines += [
                ("warning", f"{i.message}; fix: {i.fix}") for i in self.generator_language_issues()
            ]
        return lines

    def generator_language_issues(self) -> list[Issue]:
        """A warning per generative model that a candidate prompts and that does not cover
        the data's language (by its name, GGUF metadata or model card); none when unknown."""
        used = sorted({c.llm for c in self.config.candidates if c.llm is not None})
        if not used:
            return []
        out = []
        for name in used:
            llm = self.config.llms.get(name)
            if llm is None:
                continue
            path: Path | None = None
            if llm.backend == "hf":
                try:
                    path = gguf_source(llm.name) or Path(llm.name).expanduser()
                except AdaptlabError:  # not installed or not found: other checks say so
                    path = None
                if path is not None and not path.exists():
                    path = self.root / path
            found = generator_language_warning(
                self.language(), name, llm.name, generator_languages(llm.name, path)
            )
            if found is not None:
                message, fix = found
                out.append(
                    Issue(
                        message,
                        file=str(self.root / CONFIG_FILE),
                        line=key_line(self.root / CONFIG_FILE, "llms", name),
                        fix=fix,
                        severity="warning",
                        code="generator-language",
                    )
                )
        return out

    def language_issue(self, texts: list[str]) -> Issue | None:
        """A warning when the data is not in a language the configured encoder knows."""
        model = self.config.model
        if model.backend != "sentence-transformers":
            return None

        try:
            path, local = resolve_model_path(model.name)
        except AdaptlabError:  # the encoder is not installed: other checks say so
            return None
        if not local:
            return None
        found = language_warning(texts, path, model.name)
        if found is None:
            return None
        message, fix = found
        return Issue(
            message,
            file=str(self.root / "adaptlab.yaml"),
            fix=fix,
            severity="warning",
            code="language",
        )

    def split(self) -> Split:
        """Validate, then split; raises DataError before anything is written."""
        self.check_data(language=False).raise_on_errors()  # errors only; run_project warns
        examples, test = self.load_data()
        d = self.config.data
        return split_examples(
            examples,
            task=self.config.task,
            test_size=d.test_size,
            val_size=d.val_size,
            seed=self.config.seed,
            test=test,
            allow_leakage=d.leakage == "warn",
        )
