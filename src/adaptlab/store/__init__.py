"""The run store (SQLite in the project folder)."""

from adaptlab.store.sqlite import MIGRATIONS, PredictionRow, ResultRow, RunStore

__all__ = ["MIGRATIONS", "PredictionRow", "ResultRow", "RunStore"]
