"""Loading, validating and splitting labelled examples."""

from adaptlab.data.load import Example, canonical_json, load_examples
from adaptlab.data.split import Split, random_split, save_split, split_examples, stratified_split
from adaptlab.data.validate import DataReport, check_examples, normalise

__all__ = [
    "DataReport",
    "Example",
    "Split",
    "canonical_json",
    "check_examples",
    "load_examples",
    "normalise",
    "random_split",
    "save_split",
    "split_examples",
    "stratified_split",
]
