"""Deploying a strictly checked serve config onto a running Ray cluster."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
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
    placement_wait_s: float = 60,
    progress: Callable[[str], None] | None = None,
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
    wait_until_running(
        [app.name for app in schema.applications],
        timeout_s=timeout_s,
        placement_wait_s=placement_wait_s,
        progress=progress,
    )
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
    between gets a 404 from the proxy. With no prefixes (applications reached by
    handles only) there is nothing to wait for: Serve may start no proxy at all.
    """
    if not prefixes:
        return
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


def wait_until_running(
    app_names: list[str],
    *,
    timeout_s: float = 600,
    placement_wait_s: float = 60,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Block until every named application is RUNNING; raise on failure or time-out.

    A replica that fits no live node (resources or node labels, :mod:`runtime.unplaced`)
    fails the deploy after ``placement_wait_s`` (time for an autoscaler to add a node),
    with what it asked for and what the nodes offer. ``progress``: told each
    application's state when it changes, and every ``_SLOW_S`` what is still awaited.
    """
    from ray import serve

    watch = _Watch(app_names, progress)
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
        watch.saw(apps)
        if all(name in apps and apps[name].status == "RUNNING" for name in app_names):
            return
        stuck = watch.unplaceable(placement_wait_s)
        if stuck:
            raise DeployError(f"cannot place replicas after {placement_wait_s:.0f} s: {stuck}")
        if time.monotonic() - watch.started > timeout_s:
            states = {n: apps[n].status if n in apps else "MISSING" for n in app_names}
            raise DeployError(
                f"not running after {timeout_s:.0f} s: {states}. {watch.pending(apps)}"
            )
        time.sleep(0.5)


def _named(state: Any) -> str:
    """Serve's status enums print as ``ApplicationStatus.RUNNING``: the value."""
    return str(getattr(state, "value", state))


#: How often a slow deploy says what it waits for.
_SLOW_S = 30.0
_PLACEMENT_POLL_S = 2.0


class _Watch:
    """What a deploy waits for: applications' states, and replicas no node can host."""

    def __init__(self, app_names: list[str], progress: Callable[[str], None] | None) -> None:
        self.apps = app_names
        self.progress = progress
        self.started = self.said = time.monotonic()
        self.states: dict[str, str] = {}
        self.polled = 0.0
        self.stuck_since: float | None = None
        self.stuck: list[str] = []

    def saw(self, apps: dict[str, Any]) -> None:
        now = time.monotonic()
        for name in self.apps:
            status = _named(apps[name].status) if name in apps else "MISSING"
            if self.progress and self.states.get(name) != status:
                self.progress(f"  {name}: {status} ({now - self.started:.0f} s)")
            self.states[name] = status
        if self.progress and now - self.said >= _SLOW_S:
            self.said = now
            self.progress(f"  still waiting ({now - self.started:.0f} s): {self.pending(apps)}")

    def pending(self, apps: dict[str, Any]) -> str:
        """The deployments not yet running, and their replicas' states."""
        parts = []
        for name in self.apps:
            if name not in apps or apps[name].status == "RUNNING":
                continue
            for dep, status in apps[name].deployments.items():
                if status.status != "HEALTHY":
                    states = {_named(k): v for k, v in status.replica_states.items()}
                    parts.append(f"{name}/{dep} {_named(status.status)} replicas {states}")
        return "; ".join(parts) or "the applications' own start-up"

    def unplaceable(self, wait_s: float) -> str:
        """Replicas that fit no node for ``wait_s`` (polled every few seconds): their
        explanation, or ''."""
        from runtime import unplaced

        now = time.monotonic()
        if now - self.polled >= _PLACEMENT_POLL_S:
            self.polled = now
            offered = unplaced.nodes()
            stuck = [p.explain(offered) for p in unplaced.unplaceable(offered, self.apps)]
            self.stuck = list(dict.fromkeys(stuck))  # one line per deployment
            if not self.stuck:
                self.stuck_since = None
            elif self.stuck_since is None:
                self.stuck_since = now
                if self.progress:
                    self.progress(f"  waiting for a node: {'; '.join(self.stuck)}")
        if self.stuck_since is not None and now - self.stuck_since >= wait_s:
            return "; ".join(self.stuck)
        return ""
