"""The LLM deployment: a Ray Serve replica that owns a vLLM ``AsyncLLM`` engine.

HTTP: vLLM's own OpenAI routers (``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``), request models, chat templates, tool-call handling, error
handlers and disconnect handling, mounted as the replica's ASGI app.

Handle (no HTTP hop): ``chat`` / ``completions`` return a response dict;
``chat_stream`` / ``completions_stream`` yield chunk dicts, through
``handle.options(stream=True)``. Errors raise :class:`LLMError`. With ``frames=True``
(the gateway's streams) the chunks between the first one and the usage chunk are
passed on as the SSE text vLLM wrote (``str``, one ``data:`` event each; others stay
dicts: ``runtime._sse.forwardable``): the gateway forwards them without decoding and
encoding each token again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve

from runtime import _sse, names
from runtime._metrics import serve_metrics
from runtime.config.llm import LLMAppConfig
from runtime.errors import APIError, LLMError, ModelUnavailableError
from runtime.llm import tool_choice
from runtime.llm.engine_args import (
    cpu_engine_env,
    engine_threads,
    gpus_per_replica,
    parse_server_args,
)
from runtime.llm.stats import EngineStatsRecorder
from runtime.models.sources import resolve_model
from runtime.telemetry import logs
from runtime.telemetry.redact import RedactErrorBodies

logger = logging.getLogger("ray.serve")

_Handler = Callable[[Any, Any], Awaitable[Any]]


@serve.deployment(name=names.LLM_DEPLOYMENT)
@serve.ingress()
class LLMServer:
    """One vLLM engine per replica; the same class serves CPU and GPU builds.

    Example (inside a Serve app or a driver connected to the cluster)::

        handle = serve.get_deployment_handle("LLMServer", app_name="llm")
        reply = await handle.chat.remote(
            {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}
        )
    """

    # Serve awaits an async constructor; mypy does not know that protocol.
    async def __init__(self, config: dict[str, Any]) -> None:  # type: ignore[misc]
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        self._config = LLMAppConfig.model_validate(config)
        self._stopping = False  # set by __del__: the engine then stops on purpose
        logs.install(self._config.telemetry.redact_patterns)
        if self._config.accelerator == "cpu":
            # Ray sets OMP_NUM_THREADS to the replica's num_cpus (1 by default); the
            # engine process, spawned from here, would then run its kernels on one
            # core where vLLM's own server uses all of them.
            os.environ["OMP_NUM_THREADS"] = str(engine_threads(self._config))
            os.environ.update(cpu_engine_env())
        # A first start may convert a model for a minute: keep the replica's loop free.
        model = await asyncio.to_thread(resolve_model, self._config.model)
        self._args = parse_server_args(self._config, model)
        engine_args = AsyncEngineArgs.from_cli_args(self._args)
        vllm_config = engine_args.create_engine_config(UsageContext.OPENAI_API_SERVER)
        self._stats = EngineStatsRecorder()
        self._engine = AsyncLLM.from_vllm_config(
            vllm_config,
            usage_context=UsageContext.OPENAI_API_SERVER,
            # The engine's figures for the autoscaling policy, and vLLM's own metrics
            # (TTFT, TPOT, queue, KV cache, tokens) through Ray's metrics export.
            stat_loggers=[self._stats.factory, _ray_prometheus_logger()],
            enable_log_requests=False,  # requests hold prompts: never logged
            disable_log_stats=False,
        )
        self._app = await self._build_app()
        await self._warm_up()
        loop = asyncio.get_running_loop()
        self._gpu_clock = loop.create_task(self._count_gpu_time())
        self._engine_watch = loop.create_task(self._end_when_engine_dies())
        logger.info("LLMServer ready: model %s", self._config.served_name)

    async def _warm_up(self) -> None:
        """One tiny chat turn before the replica reports ready.

        Without it the first request after start-up stalled for over 30 s on the
        CPU engine, while later ones took half a second.
        """
        await self.chat(
            {
                "model": self._config.served_name,
                "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 1,
            }
        )

    async def _build_app(self) -> FastAPI:
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.openai.chat_completion.api_router import (
            attach_router as attach_chat,
        )
        from vllm.entrypoints.openai.completion.api_router import (
            attach_router as attach_completion,
        )
        from vllm.entrypoints.openai.models.api_router import attach_router as attach_models
        from vllm.entrypoints.serve.exception_handling.register import init_exception_handler

        app = FastAPI(title="LLMServer", docs_url=None, redoc_url=None)
        attach_models(app)
        attach_chat(app)
        attach_completion(app)
        init_exception_handler(app)
        # vLLM's own answer to an invalid request quotes the offending input (a prompt);
        # this one names the field and the problem only, like the handle API's.
        app.exception_handler(RequestValidationError)(_invalid_request)
        app.add_middleware(RedactErrorBodies)
        supported_tasks = await self._engine.get_supported_tasks()
        await init_app_state(self._engine, app.state, self._args, supported_tasks)
        # vLLM's engine-error handler stops its uvicorn server when the engine dies.
        # Serve owns the server here: the replica ends itself instead
        # (_end_when_engine_dies), and Serve replaces it.
        app.state.server = types.SimpleNamespace(should_exit=False)
        return app

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app

    async def _count_gpu_time(self) -> None:
        """``runtime_llm_gpu_seconds_total`` (and its cost with ``price``): the GPUs this
        replica holds, busy or idle, every few seconds while it lives."""
        gpus = gpus_per_replica(self._config)
        counters = _gpu_time_counters() if gpus and serve_metrics() is not None else None
        if counters is None:
            return
        seconds, cost = counters
        tags = {"model": self._config.served_name}
        price = self._config.price.per_gpu_second if self._config.price else 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(_GPU_CLOCK_S)
            now = time.monotonic()
            used, last = (now - last) * gpus, now
            seconds.inc(used, tags=tags)
            if price:
                cost.inc(used * price, tags=tags)

    async def _end_when_engine_dies(self) -> None:
        """End this replica's process once its engine has died, as vLLM's own server
        ends itself then.

        A failing health check alone would keep the replica for three check periods
        (about 30 s), and meanwhile its quick errors drew requests to it (the handle
        routers prefer the replica with the shortest queue). A dead actor is dropped by
        every router at its first failed request and replaced by Serve at its next
        health check; calls in flight fail as the replica dying mid-call does (the
        gateway answers 503, patient callers try again).
        """
        while not self._engine.errored:
            await asyncio.sleep(_ENGINE_WATCH_S)
        if self._stopping:
            return
        logger.error(
            "the engine of model %s has died: ending this replica (Serve replaces it)",
            self._config.served_name,
        )
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
        os._exit(1)

    async def check_health(self) -> None:
        await self._engine.check_health()

    def __del__(self) -> None:
        self._stopping = True  # a stopped engine is not a dead one
        engine = getattr(self, "_engine", None)
        if engine is not None and not engine.errored:  # a dead engine has nothing to stop
            engine.shutdown()

    # -- handle API ------------------------------------------------------------

    async def models(self) -> dict[str, Any]:
        """The OpenAI ``/v1/models`` list."""
        listing = await self._app.state.openai_serving_models.show_available_models()
        return dict(listing.model_dump())

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion (``stream`` is forced off)."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        handler = self._app.state.openai_serving_chat.create_chat_completion
        body = await self._choose_tools(body)
        return await self._complete(handler, ChatCompletionRequest, body)

    async def chat_stream(
        self, body: dict[str, Any], frames: bool = False
    ) -> AsyncIterator[dict[str, Any] | str]:
        """Chat completion chunks (``stream`` is forced on); ``frames``: module docs."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        handler = self._app.state.openai_serving_chat.create_chat_completion
        body = await self._choose_tools(body)
        async for chunk in self._stream(handler, ChatCompletionRequest, body, frames):
            yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        """A text completion (``stream`` is forced off)."""
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest

        handler = self._app.state.openai_serving_completion.create_completion
        return await self._complete(handler, CompletionRequest, body)

    async def completions_stream(
        self, body: dict[str, Any], frames: bool = False
    ) -> AsyncIterator[dict[str, Any] | str]:
        """Text completion chunks (``stream`` is forced on); ``frames``: module docs."""
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest

        handler = self._app.state.openai_serving_completion.create_completion
        async for chunk in self._stream(handler, CompletionRequest, body, frames):
            yield chunk

    async def _choose_tools(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body``, with ``tool_choice: auto`` decided first where the config says so."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        config = self._config.tool_choice
        if config.auto != "decide" or not isinstance(body, dict) or not tool_choice.applies(body):
            return body
        handler = self._app.state.openai_serving_chat.create_chat_completion
        top = min(20, int(getattr(self._args, "max_logprobs", 20) or 20))
        try:
            reply = await self._complete(
                handler, ChatCompletionRequest, tool_choice.probe(body, top)
            )
        except ModelUnavailableError:
            raise
        except LLMError:  # the request itself will say what is wrong with it
            decided, outcome = body, "error"
        else:
            p = tool_choice.call_probability(reply)
            decided = tool_choice.decided(body, p, config.call_threshold)
            outcome = "call" if decided is not body else "model"
        if serve_metrics() is not None:
            tags = {"model": self._config.served_name, "decision": outcome}
            _tool_choice_decisions().inc(1, tags=tags)
        return decided

    def record_autoscaling_stats(self) -> dict[str, float]:
        """For ``runtime.autoscaling:LLMPolicy``: the engine's queue and KV-cache use, and
        the share of GPU memory in use (NVML; absent on the CPU engine)."""
        from runtime import autoscaling
        from runtime.llm.gpu import gpu_memory_used_fraction

        s = self._stats.snapshot()
        if self._engine.output_processor.get_num_unfinished_requests() == 0:
            # The engine records figures only while it steps: the last ones, taken
            # during the final step, would keep an idle replica looking busy.
            s.running, s.waiting, s.kv_cache_usage = 0, 0, 0.0
        stats = {
            autoscaling.ENGINE_RUNNING: float(s.running),
            autoscaling.ENGINE_WAITING: float(s.waiting),
            autoscaling.KV_CACHE_USAGE: float(s.kv_cache_usage),
        }
        gpu = gpu_memory_used_fraction()
        if gpu is not None:
            stats[autoscaling.GPU_MEMORY_USED] = gpu
            _gpu_gauge().set(gpu)
        return stats

    async def engine_stats(self) -> dict[str, float]:
        """Queue, KV-cache and token figures of this replica's engine."""
        stats = self._stats.snapshot().as_dict()
        stats["unfinished_requests"] = float(
            self._engine.output_processor.get_num_unfinished_requests()
        )
        return stats

    async def _complete(
        self, handler: _Handler, request_cls: type[Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            result = await _call(handler, _parse(request_cls, body, stream=False))
        except LLMError as err:
            raise self._dead_engine(err) from None
        return dict(result.model_dump())

    async def _stream(
        self, handler: _Handler, request_cls: type[Any], body: dict[str, Any], frames: bool
    ) -> AsyncIterator[dict[str, Any] | str]:
        try:
            result = await _call(handler, _parse(request_cls, body, stream=True))
        except LLMError as err:
            raise self._dead_engine(err) from None
        first = True
        try:
            async for event in result:
                if frames and not first and _sse.forwardable(event):
                    yield event
                    continue
                first = False
                for data in _sse.data(event):
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise self._dead_engine(LLMError.from_body(chunk))
                    yield chunk
        finally:
            # A caller that stops reading (or is cancelled) closes this generator;
            # closing vLLM's generator aborts the engine request and frees its KV cache.
            await result.aclose()

    def _dead_engine(self, err: APIError) -> APIError:
        """``err``, or while the engine is dead a 503 (vLLM says 500): the model is
        unavailable until Serve has replaced this replica, and a retry is safe."""
        if not self._engine.errored or self._stopping:
            return err
        return ModelUnavailableError(
            f"the model {self._config.served_name!r} is restarting (its engine stopped)"
        )


def _ray_prometheus_logger() -> Any:
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    return RayPrometheusStatLogger


_GPU_CLOCK_S = 5.0
_ENGINE_WATCH_S = 0.5


@functools.cache
def _gpu_time_counters() -> tuple[Any, Any]:
    from ray.serve import metrics

    return (
        metrics.Counter(
            "runtime_llm_gpu_seconds_total",
            "GPU-seconds held by the model's replicas.",
            tag_keys=("model",),
        ),
        metrics.Counter(
            "runtime_llm_gpu_cost_usd_total",
            "Cost of those GPU-seconds at the app's `price`, in USD.",
            tag_keys=("model",),
        ),
    )


@functools.cache
def _tool_choice_decisions() -> Any:
    """``runtime_llm_tool_choice_decisions_total``: ``tool_choice.auto: decide``'s
    outcomes (call: sent on as `required`; model: left to the model; error: the probe
    failed, the request went on unchanged)."""
    from ray.serve import metrics

    return metrics.Counter(
        "runtime_llm_tool_choice_decisions_total",
        "Requests with tool_choice auto decided by the probe, by decision.",
        tag_keys=("model", "decision"),
    )


@functools.cache
def _gpu_gauge() -> Any:
    """``runtime_llm_gpu_memory_used_fraction``: NVML's figure for the replica's GPUs."""
    from ray.serve import metrics

    return metrics.Gauge(
        "runtime_llm_gpu_memory_used_fraction", "Share of the replica's GPU memory in use."
    )


async def _invalid_request(request: Any, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    error = LLMError(
        f"{where}: {first['msg']}" if where else str(first["msg"]), param=where or None
    )
    return JSONResponse(error.to_body(), status_code=error.status)


def _parse(request_cls: type[Any], body: dict[str, Any], *, stream: bool) -> Any:
    if not isinstance(body, dict):
        raise LLMError(f"the request body must be a JSON object, not {type(body).__name__}")
    try:
        return request_cls.model_validate({**body, "stream": stream})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LLMError(f"{where}: {first['msg']}", param=where or None) from None


async def _call(handler: _Handler, request: Any) -> Any:
    """Run a vLLM serving handler; errors become :class:`LLMError` as over HTTP."""
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.entrypoints.serve.exception_handling.error_response import (
        create_error_response,
    )

    try:
        result = await handler(request, None)
    except Exception as exc:  # vLLM raises some request errors (e.g. validation)
        result = create_error_response(exc)
    if isinstance(result, ErrorResponse):
        raise LLMError.from_body(result.model_dump())
    return result
