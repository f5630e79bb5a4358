"""The engine's own figures (queue, KV cache, tokens), kept for the replica to report."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EngineSnapshot:
    """Latest scheduler figures plus running token totals."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    finished_requests_total: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


class EngineStatsRecorder:
    """Holds an :class:`EngineSnapshot`; ``factory`` plugs into vLLM's stat loggers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = EngineSnapshot()

    def snapshot(self) -> EngineSnapshot:
        with self._lock:
            return EngineSnapshot(**asdict(self._snapshot))

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        with self._lock:
            s = self._snapshot
            if scheduler_stats is not None:
                s.running = scheduler_stats.num_running_reqs
                s.waiting = scheduler_stats.num_waiting_reqs
                s.kv_cache_usage = scheduler_stats.kv_cache_usage
            if iteration_stats is not None:
                s.generation_tokens_total += iteration_stats.num_generation_tokens
                s.prompt_tokens_total += iteration_stats.prompt_token_stats.total
                s.finished_requests_total += len(iteration_stats.finished_requests)

    def factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        """A vLLM ``StatLoggerFactory`` whose loggers write into this recorder."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        recorder = self

        class _Logger(StatLoggerBase):  # type: ignore[misc]
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                recorder.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

        return _Logger(vllm_config, engine_index)
