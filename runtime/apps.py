"""Builders: the ``import_path`` targets of serve configs (``runtime.apps:build_*``)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application, Deployment

from runtime.config.agents import AgentAppConfig
from runtime.config.gateway import GatewayAppConfig
from runtime.config.llm import LLMAppConfig
from runtime.config.placement import CpuPlacement, selector
from runtime.config.serve_file import validate_args


def build_llm_app(args: dict[str, Any]) -> Application:
    """An application serving one model with vLLM, OpenAI-compatible.

    Example::

        >>> app = build_llm_app({"model": {"source": "tiny-random"}})  # doctest: +SKIP
        >>> serve.run(app, name="llm", route_prefix="/")  # doctest: +SKIP
    """
    config: LLMAppConfig = validate_args(LLMAppConfig, args, "runtime.apps:build_llm_app")
    return _llm_deployment(config)


def _llm_deployment(config: LLMAppConfig) -> Application:
    from runtime.llm.engine_args import replica_options
    from runtime.llm.server import LLMServer

    deployment: Deployment = LLMServer  # made by @serve.deployment
    return deployment.options(**replica_options(config)).bind(config.model_dump(mode="json"))


def build_agent_app(args: dict[str, Any]) -> Application:
    """An application hosting agents and their sessions (``AgentServer``).

    Example::

        >>> app = build_agent_app({"agents": [{"name": "assistant",  # doctest: +SKIP
        ...     "factory": "runtime.agents.examples:assistant",
        ...     "llm": {"model": "smollm2-135m-instruct"}}]})
        >>> serve.run(app, name="agents", route_prefix="/v1/agents")  # doctest: +SKIP
    """
    from runtime.agents.server import AgentServer

    config: AgentAppConfig = validate_args(AgentAppConfig, args, "runtime.apps:build_agent_app")
    deployment: Deployment = AgentServer
    # The application's own LLM deployment, if any: bound here so that Serve deploys it
    # in this application (one application-level policy sees both).
    companions = [_llm_deployment(config.llm_server)] if config.llm_server else []
    return deployment.options(
        # Sessions wait on LLMs and tools, not on this replica's CPU: many per replica.
        max_ongoing_requests=512,
        ray_actor_options=_cpu_actor(config.placement),
        # A stopping replica drains: running turns may finish (then end retryable).
        graceful_shutdown_timeout_s=config.sessions.drain_s,
    ).bind(config.model_dump(mode="json"), *companions)


def build_gateway_app(args: dict[str, Any]) -> Application:
    """The gateway: the authenticated front door to models and agents (``Gateway``).

    Example::

        >>> args = {"models": [{"name": "smollm2-135m-instruct"}], "agent_apps": ["agents"],
        ...         "auth": {"local_key_env": "RUNTIME_API_KEY"}}
        >>> app = build_gateway_app(args)  # doctest: +SKIP
        >>> serve.run(app, name="gateway", route_prefix="/")  # doctest: +SKIP
    """
    from runtime.gateway.server import Gateway

    config: GatewayAppConfig = validate_args(
        GatewayAppConfig, args, "runtime.apps:build_gateway_app"
    )
    deployment: Deployment = Gateway
    return deployment.options(
        # Requests wait on LLMs and agents, not on the gateway's CPU.
        max_ongoing_requests=1000,
        ray_actor_options=_cpu_actor(config.placement),
    ).bind(config.model_dump(mode="json"))


def _cpu_actor(placement: CpuPlacement) -> dict[str, Any]:
    """An agent or gateway replica's actor options: half a CPU, on CPU workers or any node."""
    label = selector(placement)
    return {"num_cpus": 0.5, **({"label_selector": label} if label else {})}
