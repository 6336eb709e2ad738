"""The ``adaptlab.yaml`` schema: the one source of validation, defaults and help.

Every field carries its help text; ``adaptlab config schema`` prints them and the
error messages quote them. Strategy parameters are checked against the options
class of the strategy they name (see :mod:`adaptlab.strategies.registry`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from adaptlab.config.yaml_safe import SECRET_VALUE
from adaptlab.core.languages import LANGUAGES, code_for, language_name
from adaptlab.core.redact import database_url_problem
from adaptlab.core.urls import url_problem

CONFIG_FILE = "adaptlab.yaml"
BUNDLED_MODEL = "all-MiniLM-L6-v2"


# strict: `seed: yes` is not the integer 1 and `name: 2024` is not text; no NaN or
# infinity in a float field (they pass `ge=0` checks and break arithmetic later).
_STRICT = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _STRICT


_DEVICE = re.compile(r"cpu|auto|mps|cuda(:\d{1,3})?")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _device_name(v: str) -> str:
    if not _DEVICE.fullmatch(v):
        raise ValueError(f"unknown device {v!r}: use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    return v


class DataConfig(_Strict):
    path: str = Field(
        description="Labelled examples, JSONL or CSV, relative to the project folder."
    )
    test_path: str | None = Field(
        default=None,
        description="An optional holdout file of your own; when set, no test split is carved out.",
    )
    format: Literal["auto", "jsonl", "csv"] = Field(
        default="auto", description="File format; 'auto' goes by the file extension."
    )
    input_field: str = Field(default="text", description="Field (column) holding the input text.")
    label_field: str = Field(default="label", description="Field (column) holding the label.")
    sources_field: str | None = Field(
        default=None,
        description="Generation with retrieval: field listing the ids of the documents "
        "that support the reference answer (file names under rag.docs without suffix; [] "
        "when none does), for retrieval recall@k and citation checks.",
    )
    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of examples held out for the test split."
    )
    val_size: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of the training split carved out for validation (early stopping).",
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the data files (utf-8, cp1252 for Excel on Windows, "
        "latin-1, utf-16); a byte-order mark in the file overrides it.",
    )
    delimiter: str = Field(
        default="auto",
        description="CSV column delimiter: 'auto' (sniffed among , ; tab |), or one "
        "character such as ';' (German Excel) or '\\t' (tab).",
    )
    max_file_mb: float = Field(
        default=1024,
        gt=0,
        le=1 << 20,
        description="Largest data file read, in MB; a bigger file is refused, not swallowed.",
    )
    conflicts: Literal["error", "warn"] = Field(
        default="error",
        description="Same input with different labels: stop ('error'), or keep both and "
        "report them ('warn', for published datasets you must not edit).",
    )
    leakage: Literal["error", "warn"] = Field(
        default="error",
        description="A test_path input that also appears in train: stop ('error'), or keep "
        "it and report the count ('warn', to reproduce published numbers).",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{v}' (use utf-8, cp1252, latin-1 or utf-16)"
            ) from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str) -> str:
        v = "\t" if v in ("tab", "\\t") else v
        if v != "auto" and (len(v) != 1 or v in '"\r\n' or v.isalnum() or v == " "):
            raise ValueError(
                f"the delimiter must be 'auto' or one character such as ',' ';' '\\t' '|', "
                f"not {v!r}"
            )
        return v


class ModelConfig(_Strict):
    backend: str = Field(
        default="sentence-transformers", description="Backend that runs the model."
    )
    name: str = Field(
        default=BUNDLED_MODEL,
        description="Model name or local path; 'all-MiniLM-L6-v2' is the bundled offline model.",
    )
    device: str = Field(
        default="cpu", description="'cpu', 'cuda', 'cuda:1', 'mps' or 'auto' (a GPU if any)."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="'auto' uses bf16 autocast only where the hardware has native bf16, else fp32.",
    )
    batch_size: int = Field(default=64, ge=1, le=65536, description="Texts per forward pass.")
    max_seq_length: int = Field(default=128, ge=8, le=1 << 20, description="Tokens kept per input.")

    _device = field_validator("device")(_device_name)


class PriceConfig(_Strict):
    """USD per 1M tokens; overrides the shipped price table for one model."""

    input: float = Field(ge=0, description="USD per 1M input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (default: input price)."
    )


class LLMConfig(_Strict):
    backend: str = Field(
        description="'openai' (any OpenAI-compatible server), 'anthropic', 'hf', or 'fake' "
        "(scripted answers, in this process: for trying a project and for tests)."
    )
    name: str = Field(description="Model id at the provider, or a local folder for 'hf'.")
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint: vLLM, Ollama (http://localhost:11434/v1), "
        "llama.cpp server, LM Studio, Azure; default is the provider's own. Plain "
        "http(s)://host[:port][/path]: no user:password@, query or fragment (a secret "
        "there would be stored and logged). It gets a key only where the keys file binds "
        "one to it ('send:').",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Variable (environment or keys file) holding the key; default "
        "OPENAI_API_KEY / ANTHROPIC_API_KEY. Used only where the user's keys file binds "
        "it to this endpoint ('send: {NAME: [https://host]}'): a project or model folder "
        "may not choose which secret is sent where. Keys are never written anywhere.",
    )
    max_concurrency: int = Field(default=16, ge=1, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Client-side limit of requests per minute."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Client-side limit of (estimated) tokens per minute."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds before a call is abandoned.")
    max_retries: int = Field(
        default=6, ge=0, description="Retries of a failed call (429, 5xx, timeouts, broken bodies)."
    )
    stream: bool = Field(default=False, description="Stream responses (server-sent events).")
    adapter: str | None = Field(
        default=None, description="'hf' only: folder of a PEFT (LoRA) adapter to load on top."
    )
    device: str = Field(
        default="cpu", description="'hf' only: 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="'hf' only: bf16 where the hardware has it natively."
    )
    batch_size: int = Field(
        default=8, ge=1, le=65536, description="'hf' only: prompts per generate()."
    )
    prices: PriceConfig | None = Field(
        default=None, description="Override the shipped price table for this model."
    )
    answers: list[str] | dict[str, str] | None = Field(
        default=None,
        description="'fake' only: the script it answers from. A list: the answers in order, "
        "cycling back to the first after the last. A mapping: input text -> answer (the key "
        "equal to, else the first key found in, the last user message), '*' for the rest.",
    )

    _device = field_validator("device")(_device_name)

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, v: str | None) -> str | None:
        problem = url_problem(v) if v is not None else None
        if problem is not None:
            # Its own error type: the value is not repeated (it may hold a secret).
            raise PydanticCustomError(SECRET_VALUE, "base_url {reason}", problem._asdict())
        return v

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, v: str | None) -> str | None:
        if v is not None and not _VARIABLE.fullmatch(v):
            raise ValueError(
                "api_key_env must be the name of a variable (letters, digits and '_', "
                "not starting with a digit), e.g. AZURE_OPENAI_KEY"
            )
        return v

    @field_validator("answers", mode="before")
    @classmethod
    def _answers_shape(cls, v: Any) -> Any:
        # One message for a wrong shape, not one per member of the union.
        if v is None:
            return v
        if isinstance(v, list):
            bad = next((x for x in v if not isinstance(x, str)), None)
        elif isinstance(v, dict):
            bad = next((x for kv in v.items() for x in kv if not isinstance(x, str)), None)
        else:
            raise ValueError(
                "'answers' must be a list of answers, or a mapping from input text to answer"
            )
        if bad is not None:
            raise ValueError(f"every answer (and input) must be text: quote {bad!r}")
        return v

    @field_validator("answers")
    @classmethod
    def _answers_for_fake_only(
        cls, v: list[str] | dict[str, str] | None, info: ValidationInfo
    ) -> list[str] | dict[str, str] | None:
        if v is None:
            return v
        backend = info.data.get("backend")
        if backend is not None and backend != "fake":
            raise ValueError(
                f"'answers' only applies to backend 'fake', not '{backend}': remove it"
            )
        if not v:
            raise ValueError("'answers' is empty: give at least one answer")
        return v


class CandidateConfig(_Strict):
    name: str = Field(description="Unique name of this candidate in reports.")
    strategy: str = Field(description="Adaptation strategy: zero-shot, few-shot, rag, finetune, …")
    llm: str | None = Field(
        default=None,
        description="Generative strategies: the name of an entry under 'llms:' to prompt.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Options of the strategy (see `adaptlab strategies`)."
    )


BASELINE_CANDIDATE = "tfidf-baseline"


class EvaluationConfig(_Strict):
    bootstrap_resamples: int = Field(
        default=1000, ge=100, description="Resamples for the bootstrap confidence intervals."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence level.")
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Significance level of the paired tests."
    )
    latency_samples: int = Field(
        default=100,
        ge=0,
        description="Test inputs sent one at a time to measure per-request latency.",
    )
    baseline: bool = Field(
        default=True,
        description="Classification: add the TF-IDF + logistic-regression candidate "
        f"'{BASELINE_CANDIDATE}' (needs no model) unless a tfidf-lr candidate is configured, "
        "so every verdict is measured against the cheapest thing that could work.",
    )
    timing_repeats: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Passes over the test inputs whose CPU time gives an encoder candidate's "
        "cost per request (the median is reported, with the range).",
    )
    cv_folds: int = Field(
        default=5,
        ge=0,
        le=20,
        description="Classification: k-fold cross-validation over train+val for candidates "
        "cheap to refit (TF-IDF, zero-shot, few-shot, kNN), so they are compared on every "
        "train+val example instead of the validation split alone; 0 turns it off, else 2 to "
        "20. 5 is scikit-learn's default: every example gets one out-of-fold answer either "
        "way, and 10 folds only shrink the pessimism of training on 80% instead of 90% "
        "(Kohavi 1995, IJCAI). Test answers and costs are unchanged.",
    )
    cv_max_fit_s: float = Field(
        default=60.0,
        ge=0,
        description="Cross-validate only candidates whose fit on the train split took at "
        "most this many seconds (measured): k folds cost up to k such fits (an encoder "
        "candidate's folds look up the train+val vectors, embedded once, and cost far less). "
        "60 s admits the TF-IDF baseline on a few thousand examples on 2 cores (10-30 s "
        "quiet, up to 77 s measured under load), and leaves out fine-tunes.",
    )
    max_minutes: float | None = Field(
        default=30.0,
        gt=0,
        description="Before it starts, a candidate whose estimated wall time on this machine "
        "(measured by a probe: a few training steps, a few answers; adaptlab run --dry-run "
        "shows every estimate) passes this many minutes is asked about in a terminal, and "
        "skipped without one or with --no-input (the message says how to run it); run "
        "--yes runs it anyway. null: never ask.",
    )
    consistency_samples: int = Field(
        default=0,
        ge=0,
        le=20,
        description="Send each of the first consistency_inputs test inputs this many times "
        "(2 or more) and report how often the answers agree; 0 turns it off.",
    )
    consistency_inputs: int = Field(
        default=20, ge=1, description="Test inputs used for the consistency measurement."
    )
    generation_metric: Literal["token_f1", "exact_match", "similarity", "judge"] = Field(
        default="token_f1",
        description="Generation tasks: the primary score (SQuAD token F1, exact match, "
        "embedding cosine, or an LLM judge with a rubric).",
    )
    judge_llm: str | None = Field(
        default=None, description="Entry under 'llms:' that grades answers for the 'judge' metric."
    )
    judge_rubric: str = Field(
        default="Score 1 if the answer says the same as the reference, else 0.",
        description="What the judge is told to score (from 0 to 1).",
    )
    batch: bool = Field(
        default=False,
        description="Send the test, validation and consistency requests of every candidate "
        "on an OpenAI or Anthropic model through the provider's batch API (OpenAI Batch "
        "API, Anthropic Message Batches) as one batch per candidate: half the price, "
        "answered within 24 hours. The first latency_samples test requests still go one "
        "by one, to measure latency. A rerun re-attaches to a batch in flight (also "
        "'adaptlab run --batch').",
    )
    batch_retry: Literal["sync", "none"] = Field(
        default="sync",
        description="Batch lines that expired, failed or were cancelled: 'sync' asks each "
        "once more through the normal path at the standard price, so the run ends with "
        "every answer; 'none' stops the candidate, and a rerun sends only those lines in a "
        "new batch.",
    )
    batch_poll_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds between two looks at a batch in flight.",
    )

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("one fold holds nothing out: use 0 (off) or 2 to 20 folds")
        return v

    @field_validator("consistency_samples")
    @classmethod
    def _samples(cls, v: int) -> int:
        if v == 1:
            raise ValueError(
                "one answer per input agrees with itself: use 0 (off) or 2 to 20 samples"
            )
        return v

    def weak_settings(self) -> list[str]:
        """Settings that make a measurement say little, each with what to set instead
        (``adaptlab run`` prints them before it starts; nothing is refused)."""
        notes = []
        if 0 < self.latency_samples < MIN_P95_SAMPLES:
            notes.append(
                f"evaluation.latency_samples is {self.latency_samples}: a p95 of fewer than "
                f"{MIN_P95_SAMPLES} requests is just the slowest of them; set it to "
                f"{MIN_P95_SAMPLES} or more (100, the default, for a stable p95), or 0 to skip "
                "the measurement"
            )
        if self.consistency_samples and self.consistency_inputs < MIN_CONSISTENCY_INPUTS:
            notes.append(
                f"evaluation.consistency_inputs is {self.consistency_inputs}: each input moves "
                f"the agreement by {100 / self.consistency_inputs:.0f} points; set it to "
                f"{MIN_CONSISTENCY_INPUTS} or more (20, the default)"
            )
        return notes


#: Requests below which a 95th percentile is the maximum (1 in 20 lies above it).
MIN_P95_SAMPLES = 20
#: Inputs below which the consistency agreement moves by 10 points or more per input.
MIN_CONSISTENCY_INPUTS = 10


class CostConfig(_Strict):
    """Prices of compute and people time; the volume and horizon are in ``profile:``."""

    cpu_hour_usd: float = Field(
        default=0.048,
        ge=0,
        description="Price of one CPU core-hour (a cloud vCPU on demand is about 0.04–0.05 USD).",
    )
    gpu_hour_usd: float = Field(default=2.5, ge=0, description="Price of one GPU-hour.")
    tie_tolerance: float = Field(
        default=0.25,
        ge=0,
        description="Costs within this share of the cheapest count as equal (CPU timings "
        "are noisy); among candidates tied on quality and cost the more accurate wins.",
    )
    negligible_usd: float = Field(
        default=100.0,
        ge=0,
        description="Cost differences below this many USD over the whole horizon count as "
        "none: among candidates tied on quality the better scoring one wins.",
    )
    labelling_usd_per_example: float = Field(
        default=0.0,
        ge=0,
        description="What one labelled training example costs; charged once to candidates "
        "that learn from the whole train split (fine-tunes, kNN, the TF-IDF baseline).",
    )
    engineer_hour_usd: float = Field(
        default=0.0, ge=0, description="Cost of one hour of engineering time."
    )
    engineering_hours: dict[Literal["prompt", "rag", "finetune", "classical"], float] = Field(
        default_factory=dict,
        description="One-off engineering hours per route (e.g. {prompt: 4, rag: 16, "
        "finetune: 40}); times engineer_hour_usd, added to each candidate's setup.",
    )
    cpu_server_monthly_usd: float = Field(
        default=30.0,
        ge=0,
        description="A CPU server for one self-hosted encoder (profile.hosting 'dedicated'): "
        "2 vCPU and 4-8 GB on demand cost about 30 USD a month (AWS t3.medium 0.0416 "
        "USD/h x 730 h, us-east-1, 2025 list price).",
    )
    gpu_server_monthly_usd: float = Field(
        default=380.0,
        ge=0,
        description="A GPU server for one self-hosted generative model (profile.hosting "
        "'dedicated'): one T4 on demand costs about 380 USD a month (AWS g4dn.xlarge "
        "0.526 USD/h x 730 h, us-east-1, 2025 list price).",
    )
    hosting_monthly_usd: float = Field(
        default=0.0,
        ge=0,
        description="Fixed monthly cost of keeping a self-hosted candidate served (an "
        "always-on machine), on top of its measured compute per request.",
    )


class ProfileConfig(_Strict):
    """The task's situation: what the measurements are weighed against (``adaptlab decide``)."""

    monthly_requests: int = Field(
        default=50_000, ge=0, description="Forecast of requests per month."
    )
    monthly_growth: float = Field(
        default=0.0,
        gt=-1,
        le=10,
        description="Growth of the volume per month, compounding (0.05 = 5% a month).",
    )
    horizon_months: int = Field(
        default=12, ge=1, le=120, description="Months over which one-off costs are paid back."
    )
    requirements_change: Literal["rarely", "monthly", "weekly"] = Field(
        default="rarely", description="How often the task's requirements (labels, format) change."
    )
    knowledge_change: Literal["never", "yearly", "monthly", "weekly", "daily"] = Field(
        default="never", description="How often the facts the answers depend on change."
    )
    latency_budget_ms: float | None = Field(
        default=None, gt=0, description="p95 latency a request may take, in ms (none: no limit)."
    )
    data_may_leave: bool = Field(
        default=True,
        description="May inputs be sent to a hosted API outside the company? false rules "
        "out hosted candidates (the seeds: privacy means self-hosting).",
    )
    citations_needed: bool = Field(
        default=False, description="Must answers point to their sources?"
    )
    hallucination_tolerance: Literal["low", "medium", "high"] = Field(
        default="medium", description="How bad a confident wrong answer is."
    )
    format_critical: bool = Field(
        default=False, description="Must every output follow the format exactly?"
    )
    monthly_budget_usd: float | None = Field(
        default=None, ge=0, description="Most the candidate may cost a month (none: no limit)."
    )
    error_cost_usd: float = Field(
        default=0.0,
        ge=0,
        description="What one wrong answer costs you in USD (a misrouted ticket: the "
        "agent minutes to reroute it); 0 means unknown. When set, candidates within noise "
        "of the best are chosen by expected total cost: errors x this + running + hosting "
        "+ setup over the horizon.",
    )
    answers_may_wait: bool = Field(
        default=False,
        description="May answers arrive within 24 hours instead of seconds (nightly "
        "classification, back-office extraction)? true serves candidates on an OpenAI or "
        "Anthropic model at their batch API's price (half), which moves break-evens.",
    )
    hosting: Literal["dedicated", "shared"] = Field(
        default="dedicated",
        description="How a self-hosted candidate is served: 'dedicated' (it needs its own "
        "machine: a CPU server for an encoder, a GPU server for a generative model, none "
        "for the TF-IDF baseline; priced by cost.cpu_server_monthly_usd and "
        "cost.gpu_server_monthly_usd) or 'shared' (an existing server: only its measured "
        "CPU or GPU time per request).",
    )


class RagConfig(_Strict):
    docs: str = Field(
        default="docs",
        description="Folder of documents to retrieve from (.md, .txt, .html, .pdf), relative "
        "to the project folder.",
    )
    index: str = Field(
        default=".adaptlab/rag", description="Where the index is kept, relative to the project."
    )
    language: str = Field(
        default="english",
        description="Language of the documents: picks BM25's Snowball stemmer and stop "
        "words (english, german, french, spanish, …).",
    )
    chunk_tokens: int = Field(
        default=200,
        ge=32,
        le=8192,
        description="Most tokens per chunk (the encoder's tokenizer, heading path included); "
        "keep it at or under the encoder's max_seq_length so nothing is truncated.",
    )
    chunk_overlap: int = Field(
        default=40, ge=0, description="Tokens of whole sentences shared by neighbouring chunks."
    )
    encoder: ModelConfig = Field(
        default_factory=lambda: ModelConfig(max_seq_length=256),
        description="The embedding model (default: the bundled all-MiniLM-L6-v2 at its "
        "256-token limit); any sentence-transformers model or folder.",
    )
    embeddings_llm: str | None = Field(
        default=None,
        description="Instead of 'encoder': an entry under 'llms:' (backend openai) whose "
        "model is an embedding model, e.g. text-embedding-3-small.",
    )
    mode: Literal["dense", "bm25", "rrf", "hybrid"] = Field(
        default="hybrid",
        description="'dense' (embeddings), 'bm25', 'rrf' (reciprocal-rank fusion) or "
        "'hybrid' (convex combination of normalised scores, Bruch et al. 2023).",
    )
    hybrid_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Dense share of the 'hybrid' score; 'adaptlab rag eval --tune' finds "
        "the best on your labelled queries.",
    )
    top_k: int = Field(default=3, ge=1, le=50, description="Chunks put into each prompt.")
    depth: int = Field(
        default=100, ge=1, le=10000, description="Candidates each ranking contributes to fusion."
    )
    reranker: str | None = Field(
        default=None,
        description="A cross-encoder (sentence-transformers CrossEncoder name or folder) "
        "that re-scores the fused top rerank_depth chunks.",
    )
    rerank_depth: int = Field(default=20, ge=1, le=1000, description="Chunks reranked.")
    max_file_mb: float = Field(
        default=20, gt=0, le=1 << 16, description="Largest document read, in MB."
    )
    max_pages: int = Field(
        default=5000,
        ge=1,
        description="PDF pages read of one document; the rest is left out, with a note.",
    )
    max_chars: int = Field(
        default=20_000_000,
        ge=1,
        description="Characters of text kept of one document (a small PDF can hold far "
        "more text than its size); the rest is left out, with a note.",
    )
    max_seconds: float = Field(
        default=60,
        gt=0,
        description="Seconds spent reading one PDF (checked between pages); the pages not "
        "read by then are left out, with a note.",
    )
    encoding: str = Field(
        default="utf-8", description="Encoding of text, markdown and HTML documents."
    )
    store: Literal["embedded", "pgvector"] = Field(
        default="embedded",
        description="'embedded' (in the project folder) or 'pgvector' (PostgreSQL).",
    )
    pg_url: str | None = Field(
        default=None,
        description="pgvector: a PostgreSQL URL (postgresql://user@host/db); the password "
        "comes from PGPASSWORD, never from this file. Unset: a local pgserver in the index "
        "folder.",
    )

    _encoding = field_validator("encoding")(DataConfig._known_encoding.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _overlap_below_limit(self) -> RagConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("rag.chunk_overlap must be smaller than rag.chunk_tokens")
        return self


class ProjectConfig(_Strict):
    model_config = ConfigDict(**_STRICT, validate_by_name=True, serialize_by_alias=True)

    name: str = Field(description="Project name, shown in reports.")
    task: Literal["classification", "extraction", "generation"] = Field(
        default="classification",
        description="'classification' (a label per input), 'extraction' (a JSON object per "
        "input, following 'schema') or 'generation' (free text scored against a reference).",
    )
    seed: int = Field(
        default=42,
        ge=0,
        lt=1 << 32,
        description="Seed for splits, sampling and training: 0 ≤ seed < 2**32 (what numpy "
        "and torch accept).",
    )
    data: DataConfig = Field(description="Where the labelled examples are and how to split them.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Classification: every label with a one-line description; the descriptions are "
            "the 'prompt' that zero-shot classifies against."
        ),
    )
    schema_: dict[str, Any] | str | None = Field(
        default=None,
        alias="schema",
        description="Extraction: the JSON schema of the target object, inline or a .json file.",
    )
    instruction: str | None = Field(
        default=None, description="Generation: what the model is asked to do with each input."
    )
    language: str | None = Field(
        default=None,
        description="Write the data's language as a two-letter ISO 639-1 code such as de or "
        "en, or leave the key out to have it detected from the data; it picks the language of "
        "the built-in prompt templates.",
    )
    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="The encoder: embeddings for the classifier strategies, example selection "
        "and retrieval.",
    )
    llms: dict[str, LLMConfig] = Field(
        default_factory=dict,
        description="Generative models by name; a candidate names one with 'llm:'.",
    )
    candidates: list[CandidateConfig] = Field(
        min_length=1,
        description="The candidates to compare: each a unique name, a strategy and its params.",
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Statistics of the comparison."
    )
    cost: CostConfig = Field(default_factory=CostConfig, description="Prices.")
    profile: ProfileConfig = Field(
        default_factory=ProfileConfig,
        description="Volume, horizon and constraints the recommendation weighs "
        "(`adaptlab decide` asks for them).",
    )
    rag: RagConfig | None = Field(
        default=None,
        description="Retrieval over your documents: the index, search and what goes into "
        "prompts of candidates with 'context_k'.",
    )
    store: str | None = Field(
        default=None,
        description="Where runs and results are kept. Unset: .adaptlab/runs.db (SQLite) in "
        "the project folder. A PostgreSQL URL (postgresql://user@host:port/db): one store "
        "that several users, machines and servers share, each result computed once; the "
        "password comes from PGPASSWORD or ~/.pgpass, never from this file. The variable "
        "ADAPTLAB_STORE_URL, when set, is used instead.",
    )

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str | None) -> str | None:
        problem = database_url_problem(v) if v is not None else None
        if problem is not None:
            # Its own error type: the value is not repeated (it may hold a password).
            raise PydanticCustomError(SECRET_VALUE, "store {reason}", problem._asdict())
        return v

    @model_validator(mode="before")
    @classmethod
    def _volume_moved_to_profile(cls, data: Any) -> Any:
        # Before the task profile, the volume and horizon lived under cost:; configs (and
        # runs stored with them) that say so keep working.
        if isinstance(data, dict) and isinstance(data.get("cost"), dict):
            cost = dict(data["cost"])
            moved = {k: cost.pop(k) for k in ("monthly_requests", "horizon_months") if k in cost}
            if moved:
                profile = data.get("profile")
                profile = dict(profile) if isinstance(profile, dict) else {}
                for k, v in moved.items():
                    profile.setdefault(k, v)
                data = {**data, "cost": cost, "profile": profile}
        return data

    @model_validator(mode="after")
    def _classical_baseline(self) -> ProjectConfig:
        names = {c.name for c in self.candidates}
        if (
            self.task == "classification"
            and self.evaluation.baseline
            and not any(c.strategy == "tfidf-lr" for c in self.candidates)
            and BASELINE_CANDIDATE not in names
        ):
            self.candidates.append(CandidateConfig(name=BASELINE_CANDIDATE, strategy="tfidf-lr"))
        return self

    @field_validator("labels")
    @classmethod
    def _label_descriptions(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if info.data.get("task", "classification") == "classification" and len(v) < 2:
            raise ValueError("a classification task needs at least two labels")
        for label, desc in v.items():
            if not str(desc).strip():
                raise ValueError(f"label '{label}' has an empty description")
        return v

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = v.strip().lower()
        if code in LANGUAGES:
            return code
        meant = code_for(v)
        hint = f"; did you mean '{meant}' ({language_name(meant)})?" if meant else ""
        raise ValueError(f"'{v}' is not an ISO 639-1 language code{hint}")

    @field_validator("schema_")
    @classmethod
    def _schema_for_extraction(cls, v: Any, info: ValidationInfo) -> Any:
        if info.data.get("task") == "extraction" and v is None:
            raise ValueError("an extraction task needs 'schema:' (the JSON schema of the target)")
        return v

    @field_validator("candidates")
    @classmethod
    def _unique_candidates(cls, v: list[CandidateConfig]) -> list[CandidateConfig]:
        seen: set[str] = set()
        for cand in v:
            if cand.name in seen:
                raise ValueError(
                    f"candidate name '{cand.name}' appears twice; names must be unique"
                )
            seen.add(cand.name)
        return v
