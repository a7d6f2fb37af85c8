"""recllm: LLM-assisted recommendation with classic recommenders as retrievers and baselines."""

from recllm.errors import ConfigError, DataError, RecllmError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "RecllmError", "__version__"]
