"""The demo: a character-level GPT on text that ships with Python (``python -m lightning_scaling.demo``)."""
