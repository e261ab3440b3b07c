"""scopebench: accuracy and compute benchmarks for multi-encoder vision-language models."""

__version__ = "0.1.0"
