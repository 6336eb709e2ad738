"""Loading, validating and splitting labelled examples."""

from adaptlab.data.load import Example, load_examples
from adaptlab.data.split import Split, save_split, stratified_split
from adaptlab.data.validate import DataReport, check_examples, normalise

__all__ = [
    "DataReport",
    "Example",
    "Split",
    "check_examples",
    "load_examples",
    "normalise",
    "save_split",
    "stratified_split",
]
