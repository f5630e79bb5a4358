"""Deploying a strictly checked serve config onto a running Ray cluster."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from runtime.config.serve_file import check_serve_config


class DeployError(RuntimeError):
    """An application failed to deploy, or did not become ready in time."""


def deploy_config(
    config: dict[str, Any] | Any,
    *,
    source: str = "<serve config>",
    timeout_s: float = 600,
    wait_for_http: bool = True,
) -> Any:
    """Deploy a serve config (a dict, or a checked ``ServeDeploySchema``) and wait until ready.

    Like ``serve deploy``, the config is declarative: applications it does not
    name are removed. Ray must be initialized (``ray.init``) beforehand. With
    ``wait_for_http`` (for a cluster on this machine), it also waits until the
    HTTP ingress routes every application.

    Returns:
        The ``ServeDeploySchema`` that was deployed.
    Raises:
        ConfigError: the config failed the strict check (nothing was deployed).
        DeployError: an application failed, with Ray's message, or timed out.
    """
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = config if isinstance(config, ServeDeploySchema) else check_serve_config(config, source)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=schema.grpc_options.model_dump(),
        controller_options=schema.controller_options,
        # The proxies start with Serve: they trace only if they get the config now.
        global_tracing_config=schema.tracing_config,
        global_logging_config=schema.logging_config,
    )
    client.deploy_apps(schema, _blocking=False)
    wait_until_running([app.name for app in schema.applications], timeout_s=timeout_s)
    if wait_for_http:
        host = schema.http_options.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        prefixes = [app.route_prefix for app in schema.applications if app.route_prefix]
        wait_for_routes(f"http://{host}:{schema.http_options.port}", prefixes)
    return schema


def wait_for_routes(base_url: str, prefixes: list[str], *, timeout_s: float = 60) -> None:
    """Block until Serve's HTTP ingress at ``base_url`` routes every prefix.

    An application is RUNNING before the proxy has its route: a request sent in
    between gets a 404 from the proxy.
    """
    deadline = time.monotonic() + timeout_s
    routes: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/-/routes", timeout=5) as reply:
                routes = json.loads(reply.read())
            if all(prefix in routes for prefix in prefixes):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise DeployError(f"{base_url} does not route {prefixes} after {timeout_s:.0f} s: {routes}")


def wait_until_running(app_names: list[str], *, timeout_s: float = 600) -> None:
    """Block until every named application is RUNNING; raise on failure or time-out."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        failed = {
            name: apps[name].message
            for name in app_names
            if name in apps and apps[name].status in ("DEPLOY_FAILED", "UNHEALTHY")
        }
        if failed:
            detail = "; ".join(f"{name}: {msg}" for name, msg in failed.items())
            raise DeployError(f"deploy failed: {detail}")
        if all(name in apps and apps[name].status == "RUNNING" for name in app_names):
            return
        if time.monotonic() > deadline:
            states = {n: apps[n].status if n in apps else "MISSING" for n in app_names}
            raise DeployError(f"not running after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)
