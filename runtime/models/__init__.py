"""Model sources: where the weights an LLM deployment serves come from."""

from runtime.models.sources import (
    LOCAL_MODELS,
    materialize,
    prepare_local_model,
    resolve_model,
)

__all__ = ["LOCAL_MODELS", "materialize", "prepare_local_model", "resolve_model"]
