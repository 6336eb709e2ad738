"""LLM fine-tuning: chat data, the local trainer, provider jobs."""
