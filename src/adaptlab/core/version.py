"""adaptlab's version: written into run stores, exported model folders and reports."""

__version__ = "0.1.0"
