"""``adaptlab-model.json``: the manifest of an exported model folder, and its error."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adaptlab.core.errors import AdaptlabError

MANIFEST = "adaptlab-model.json"
FORMAT = "adaptlab-model"
FORMAT_VERSION = 1


class ExportError(AdaptlabError):
    """A candidate cannot be exported, or a model folder cannot be loaded."""


class Manifest(BaseModel):
    """``adaptlab-model.json``: what an exported candidate is and how to load it."""

    model_config = ConfigDict(extra="forbid")

    format: str
    format_version: int
    adaptlab_version: str
    created_at: str
    candidate: str
    strategy: str
    options: dict[str, Any]
    generative: bool
    task: str
    labels: dict[str, str]
    seed: int
    #: The data fields of the project it came from (``adaptlab logs export`` writes them).
    input_field: str = "text"
    label_field: str = "label"
    #: The project's ``model:`` section (or None), name relative to the folder when
    #: the encoder is the export's own (``encoder_folder``).
    encoder: dict[str, Any] | None = None
    encoder_folder: str | None = None
    #: The ``llms:`` entry the answers come from, keys left out; ``adapter`` and a
    #: local ``name`` are folders inside the export.
    llm: dict[str, Any] | None = None
    llm_folders: dict[str, str] = Field(default_factory=dict)
    template: dict[str, str] | None = None  # name, version, file (inside prompt/)
    task_options: dict[str, Any] = Field(default_factory=dict)
    #: Retrieval over documents (``context_k``): the project folder whose index serves it.
    rag_project: str | None = None
    state: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)  # run id, result key, data fingerprint
    figures: dict[str, Any] = Field(default_factory=dict)  # measured on the run's holdout
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256
