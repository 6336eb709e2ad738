"""Serving the winner: exported model folders, the OpenAI-compatible server, A/B
routes and shadow traffic, the request log and its feedback, keys and limits."""
