"""The run store: SQLite in the project folder, or a shared PostgreSQL database."""

from adaptlab.store.schema import MIGRATIONS
from adaptlab.store.sqlite import PredictionRow, ResultRow, RunStore

__all__ = ["MIGRATIONS", "PredictionRow", "ResultRow", "RunStore"]
