from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from jsonschema.exceptions import SchemaError

from adaptlab.data.json_fields import extract_json, field_group, flatten_fields, validate_json
from adaptlab.evaluation.text_metrics import (
    Counts,
    embedding_similarity,
    exact_match,
    extraction_metrics,
    field_scores,
    normalize_answer,
    token_f1,
)

# ------------------------------------------------------------------ short answers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Cat's hat!", "cats hat"),
        ("  a   Denver\tBroncos ", "denver broncos"),
        ("An apple, the pear.", "apple pear"),
        ("$5.00", "500"),
        ("„Hallo“, sagte er — «gut».", "hallo sagte er gut"),
        ("theory", "theory"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_exact_match() -> None:
    assert exact_match("The Broncos.", "broncos") == 1.0
    assert exact_match("Denver Broncos", "Broncos") == 0.0
    assert exact_match(None, "x") == 0.0
    assert exact_match(None, "") == 1.0
    assert exact_match("Panthers", ["Carolina Panthers", "the Panthers"]) == 1.0
    with pytest.raises(ValueError):
        exact_match("x", [])


def test_token_f1_hand_computed() -> None:
    # 1 shared token; precision 1/2, recall 1/1.
    assert token_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    # "the" is dropped: 2 of 3 predicted tokens are right, both gold tokens found.
    assert token_f1("the Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    # Duplicates count once per occurrence: overlap {x: 1, y: 1}.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("Carolina", "Denver") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("the", "") == 1.0  # both normalise to nothing
    assert token_f1(None, "Denver") == 0.0
    assert token_f1("Denver", ["Carolina Panthers", "Denver Broncos"]) == pytest.approx(2 / 3)


# ------------------------------------------------------------------ extraction


def test_flatten_fields() -> None:
    obj = {"a": {"b": {"c": 1}}, "l": [1, "x", None], "o": [{"k": 1}, [2]], "e": {}, "n": None}
    assert flatten_fields(obj) == {
        "a.b.c": 1,
        "l": [1, "x", None],
        "o[0].k": 1,
        "o[1]": [2],
        "n": None,
    }


GOLD: dict[str, Any] = {
    "name": "ACME GmbH",
    "address": {"city": "Berlin", "zip": "10115"},
    "total": 12.5,
    "tags": ["urgent", "billing", "billing"],
    "notes": None,
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}],
}
PRED: dict[str, Any] = {
    "name": "acme gmbh.",  # equal after normalisation
    "address": {"city": "Munich"},  # wrong city, missing zip
    "total": 12.50,
    "tags": ["billing", "urgent", "extra"],  # multiset: 2 right, 1 extra, 1 billing missing
    "notes": None,
    "extra": "x",  # not in gold
    "items": [{"sku": "A1", "qty": 2.0}, {"sku": "B3", "qty": 1}],
}


def test_field_scores_nested_missing_extra() -> None:
    scores = field_scores(PRED, GOLD)
    assert scores.parsed
    assert scores.fields == {
        "address.city": Counts(0, 1, 1),
        "address.zip": Counts(0, 0, 1),
        "extra": Counts(0, 1, 0),
        "items[0].qty": Counts(1, 0, 0),
        "items[0].sku": Counts(1, 0, 0),
        "items[1].qty": Counts(1, 0, 0),
        "items[1].sku": Counts(0, 1, 1),
        "name": Counts(1, 0, 0),
        "tags": Counts(2, 1, 1),
        "total": Counts(1, 0, 0),
    }
    assert scores.total == Counts(7, 4, 4)
    assert scores.f1 == pytest.approx(14 / 22)


def test_field_scores_unparsed_counts_every_gold_value_missed() -> None:
    scores = field_scores(None, GOLD)
    assert not scores.parsed
    # name, city, zip, total, 3 tags, 2 skus, 2 qtys; notes is null so not expected.
    assert scores.total == Counts(0, 0, 11)
    assert scores.f1 == 0.0
    assert field_scores("not a dict", GOLD).total == Counts(0, 0, 11)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ({"n": "42"}, {"n": 42}, Counts(0, 1, 1)),  # a string is not a number
        ({"b": 1}, {"b": True}, Counts(0, 1, 1)),  # nor is 1 a boolean
        ({"b": True}, {"b": True}, Counts(1, 0, 0)),
        ({"x": 0.1 + 0.2}, {"x": 0.3}, Counts(1, 0, 0)),
        ({"a": "  "}, {"a": "x"}, Counts(0, 0, 1)),  # blank means no value
        ({"a": None}, {"a": "x"}, Counts(0, 0, 1)),
        ({}, {"a": "x"}, Counts(0, 0, 1)),
        ({"a": "x"}, {"a": None}, Counts(0, 1, 0)),
        ({"a": "x"}, {}, Counts(0, 1, 0)),
        ({"a": None}, {}, Counts()),
        ({"a": ["b", "a"]}, {"a": ["A", "b"]}, Counts(2, 0, 0)),  # order ignored
        ({"a": "x"}, {"a": ["x", "y"]}, Counts(1, 0, 1)),  # scalar vs list
    ],
)
def test_field_value_comparison(
    pred: dict[str, Any], gold: dict[str, Any], expected: Counts
) -> None:
    assert field_scores(pred, gold).total == expected


def test_both_empty_is_perfect() -> None:
    assert field_scores({}, {}).f1 == 1.0
    assert field_scores({"a": None}, {"a": None}).f1 == 1.0


def test_extraction_metrics() -> None:
    m = extraction_metrics([PRED, None], [GOLD, {"name": "X"}])
    # Totals: tp 7, fp 4, fn 4 + 1.
    assert m.precision == pytest.approx(7 / 11)
    assert m.recall == pytest.approx(7 / 12)
    assert m.f1 == pytest.approx(14 / 23)
    assert m.per_example_f1 == pytest.approx([14 / 22, 0.0])
    assert (m.n, m.unparsed) == (2, 1)
    assert m.per_field["name"].precision == 1.0
    assert m.per_field["name"].recall == 0.5
    assert m.per_field["name"].support == 2
    sku = m.per_field["items[].sku"]
    assert (sku.precision, sku.recall, sku.support) == (0.5, 0.5, 2)
    assert m.per_field["extra"].support == 0
    assert m.per_field["extra"].precision == 0.0
    with pytest.raises(ValueError):
        extraction_metrics([None], [])
    with pytest.raises(ValueError):
        extraction_metrics([], [])


def test_field_group() -> None:
    assert field_group("items[3].parts[12].sku") == "items[].parts[].sku"


# ------------------------------------------------------------------ JSON answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Sure! Here it is:\n```\n{"a": {"b": [1, 2]}}\n```\nHope it helps.', {"a": {"b": [1, 2]}}),
        ('The answer is {"a": "}{"} and then {"b": 2}.', {"a": "}{"}),
        ('prefix {not json} then {"ok": true} suffix', {"ok": True}),
        ('```json\n{bad}\n```\nbut here: {"x": 1}', {"x": 1}),
        ('```python\nprint(1)\n```\n```json\n{"y": 2}\n```', {"y": 2}),
        ('{"outer": {broken} {"inner": 1}', {"inner": 1}),
    ],
)
def test_extract_json_accepts(text: str, expected: object) -> None:
    assert extract_json(text) == (True, expected)


@pytest.mark.parametrize(
    "text", ["no json here", '{"a": 1,}', "{'a': 1}", '{"a": NaN}', '{"a": 1', ""]
)
def test_extract_json_rejects(text: str) -> None:
    assert extract_json(text) == (False, None)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_validate_json_valid_fenced() -> None:
    obj, errors = validate_json('Result:\n```json\n{"name": "Ada", "age": 36}\n```', SCHEMA)
    assert obj == {"name": "Ada", "age": 36}
    assert errors == []


def test_validate_json_reports_every_violation() -> None:
    obj, errors = validate_json('{"age": -1, "tags": ["a", 3], "x": 1}', SCHEMA)
    assert obj == {"age": -1, "tags": ["a", 3], "x": 1}  # returned so fields can be scored
    assert errors == [
        "$: 'name' is a required property",
        "$: Additional properties are not allowed ('x' was unexpected)",
        "$.age: -1 is less than the minimum of 0",
        "$.tags[1]: 3 is not of type 'string'",
    ]


def test_validate_json_objects_and_failures() -> None:
    assert validate_json({"name": "A", "age": 1}, SCHEMA) == ({"name": "A", "age": 1}, [])
    assert validate_json([1], SCHEMA) == ([1], ["$: [1] is not of type 'object'"])
    assert validate_json("I cannot answer that.", SCHEMA) == (
        None,
        ["$: no JSON found in the answer"],
    )
    # Draft 2020-12 keywords are honoured.
    tuple_schema = {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}
    assert validate_json("[1]", tuple_schema) == ([1], [])
    assert validate_json("[1, 2]", tuple_schema)[1] != []
    with pytest.raises(SchemaError):
        validate_json("{}", {"type": "objekt"})


# ------------------------------------------------------------------ free text


def test_embedding_similarity() -> None:
    table = {"cat": [1.0, 0.0], "kitten": [0.6, 0.8], "car": [0.0, 2.0], "x": [-1.0, 0.0]}
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([table[t] for t in texts])

    sims = embedding_similarity(
        ["cat", "", None, "car", "cat"], ["kitten", " ", "x", "cat", "x"], embed
    )
    np.testing.assert_allclose(sims, [0.6, 1.0, 0.0, 0.0, -1.0])
    assert calls == [["cat", "car", "cat", "kitten", "x", "cat", "x"]]  # one call, no blanks


def test_embedding_similarity_edge_cases() -> None:
    def never(texts: list[str]) -> np.ndarray:
        raise AssertionError("nothing to embed")

    np.testing.assert_array_equal(embedding_similarity(["", None], ["", "  "], never), [1.0, 1.0])
    assert embedding_similarity([], [], never).shape == (0,)
    with pytest.raises(ValueError):
        embedding_similarity(["a"], [], never)
    with pytest.raises(ValueError, match="shape"):
        embedding_similarity(["a"], ["b"], lambda t: np.ones((1, 3)))
