"""The HTML report: one self-contained file rebuilt from the run store."""

from __future__ import annotations

from adaptlab.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
