"""Generative models: request types, the concurrent cached runner, prices, tokens."""
