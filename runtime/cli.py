"""Command line: ``python -m runtime run|check|keys|kuberay|models|sessions``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime import _env
from runtime.config.errors import ConfigError


def _cmd_check(ns: argparse.Namespace) -> int:
    from runtime.config.serve_file import load_serve_config

    status = 0
    for path in ns.configs:
        try:
            load_serve_config(path)
            print(f"{path}: ok")
        except ConfigError as err:
            print(err, file=sys.stderr)
            status = 1
    return status


def _cmd_kuberay(ns: argparse.Namespace) -> int:
    from runtime import kuberay

    try:
        stale = kuberay.generate(check=ns.check)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    for path in stale:
        print(f"{path}: {'stale (run `python -m runtime kuberay`)' if ns.check else 'written'}")
    if not stale:
        print("kuberay serve configs: up to date")
    return 1 if ns.check and stale else 0


def _cmd_sessions_prune(ns: argparse.Namespace) -> int:
    """Delete sessions idle for ``--idle-days`` (the cluster's periodic clean-up job)."""
    import asyncio
    import time

    from runtime.agents.store import open_store
    from runtime.config.agents import PostgresStore, SqliteStore, StoreConfig

    if ns.idle_days <= 0:
        print("--idle-days must be more than 0", file=sys.stderr)
        return 2
    config: StoreConfig
    if ns.postgres_dsn_env:
        if not os.environ.get(ns.postgres_dsn_env):
            print(f"${ns.postgres_dsn_env} (the PostgreSQL DSN) is not set", file=sys.stderr)
            return 2
        config = PostgresStore(kind="postgres", dsn_env=ns.postgres_dsn_env)
    else:
        config = SqliteStore(kind="sqlite", path=str(ns.sqlite))

    async def prune() -> list[str]:
        store = await open_store(config)
        try:
            return await store.prune(time.time() - ns.idle_days * 86400, dry_run=ns.dry_run)
        finally:
            await store.close()

    ids = asyncio.run(prune())
    verb = "would delete" if ns.dry_run else "deleted"
    print(f"sessions idle for {ns.idle_days:g} days: {verb} {len(ids)}")
    return 0


def _cmd_models(ns: argparse.Namespace) -> int:
    from runtime.models.sources import prepare_local_model

    for name in ns.names:
        print(f"{name}: {prepare_local_model(name)}")
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from runtime.config.serve_file import load_serve_config
    from runtime.deploy import DeployError, deploy_config

    try:
        schema = load_serve_config(ns.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    refused = _connect(ns, schema)
    if refused is not None:
        return refused
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"Deploying {ns.config} (the first start converts the model: about a minute)")
        began = time.monotonic()
        deploy_config(
            schema,
            source=str(ns.config),
            wait_for_http=not ns.address,
            placement_wait_s=ns.placement_wait_s,
            progress=lambda line: print(line, flush=True),
        )
        print(f"Started in {time.monotonic() - began:.0f} s")
        _print_endpoints(schema)
        # Ctrl-C stops a deploy in progress (KeyboardInterrupt); once serving, it
        # sets `stop`, also in a process started with SIGINT ignored (`cmd &`).
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
    except DeployError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping: shutting down Serve and Ray ...")
        serve.shutdown()
        ray.shutdown()
        if not ns.address:
            from runtime import local_ray

            local_ray.reap_orphan_engines()
    return 0


#: Printed when a local cluster starts with ``--ingress haproxy`` (docs/security.md).
HAPROXY_WARNING = (
    "WARNING: --ingress haproxy: each ingress replica (the gateway) also listens on "
    "every interface, on a port of its own, for HTTP that HAProxy forwards; anyone who "
    "reaches this machine reaches those ports (the gateway's API keys still apply, "
    "Ray's token does not). Use it on a machine behind a firewall."
)


def _connect(ns: argparse.Namespace, schema: Any) -> int | None:
    """Connect to ``--address``, or start a new local cluster (gone on exit; its
    processes inherit the Serve settings); an exit status if that is refused."""
    import ray

    from runtime import local_ray
    from runtime.config.placement import CPU_WORKER

    if ns.address:
        if ns.ingress == "haproxy":
            print(
                f"--ingress haproxy needs {_env.SERVE_HAPROXY}=1 on the cluster's nodes "
                "when they start; it cannot be switched on from here",
                file=sys.stderr,
            )
            return 2
        ray.init(address=ns.address, log_to_driver=ns.verbose)
        return None
    try:
        auth = local_ray.auth_env(ns.insecure_no_ray_auth)
    except local_ray.InsecureClusterError as err:
        print(err, file=sys.stderr)
        return 2
    if auth[local_ray.AUTH_MODE] == "disabled":
        print(local_ray.INSECURE_WARNING, file=sys.stderr)
    if ns.ingress == "haproxy":
        print(HAPROXY_WARNING, file=sys.stderr)
    os.environ.update(_env.serve_env(ns.ingress))
    os.environ.update(_env.proxy_tracing_env(schema.tracing_config))
    _local_keys(schema)  # before Ray starts: its processes inherit the key
    # Loopback only, token auth on (runtime/local_ray.py, docs/security.md).
    local_ray.init(
        ns.insecure_no_ray_auth,
        include_dashboard=False,
        log_to_driver=ns.verbose,
        # It plays a CPU worker too: configs with `placement: cpu-worker` run here.
        labels=dict(CPU_WORKER),
        # Ray's metrics (the runtime's, Serve's, vLLM's) for Prometheus to scrape:
        # docs/observability.md.
        _metrics_export_port=ns.metrics_port,
    )
    return None


def _local_keys(schema: object) -> None:
    """Local mode: the gateway's key comes from its ``local_key_env`` variable; when that
    is unset, generate one for this run and print it (the only place it appears)."""
    from runtime.gateway.auth import new_key

    for app in schema.applications:  # type: ignore[attr-defined]
        if app.import_path != "runtime.apps:build_gateway_app":
            continue
        env = ((app.args or {}).get("auth") or {}).get("local_key_env")
        if not env:
            continue
        if _env.optional(env):
            print(f"API key: the value of ${env}")
        else:
            os.environ[env] = new_key()
            print(f"API key for this run (set {env} to choose your own): {os.environ[env]}")


def _print_endpoints(schema: object) -> None:
    http = schema.http_options  # type: ignore[attr-defined]
    base = f"http://{http.host}:{http.port}"
    for app in schema.applications:  # type: ignore[attr-defined]
        if app.route_prefix is None:
            print(f"\nApplication '{app.name}' is running (deployment handles only)")
            continue
        prefix = app.route_prefix.rstrip("/")
        if app.import_path == "runtime.apps:build_gateway_app":
            models = [m.get("name", "?") for m in (app.args or {}).get("models", [])]
            model = models[0] if models else "<model>"
            key = ((app.args or {}).get("auth") or {}).get("local_key_env") or "API_KEY"
            print(
                f"\nGateway '{app.name}' is serving at {base}{prefix}/v1 (API key required)\n"
                f'  curl {base}{prefix}/v1/chat/completions -H "Authorization: Bearer ${key}" \\\n'
                f'    -H \'Content-Type: application/json\' -d \'{{"model": "{model}", '
                f'"messages": [{{"role": "user", "content": "Hi"}}]}}\'\n'
                f'  python: runtime.connect("{base}{prefix}", api_key=...)'
                f'.agent("assistant").session().invoke("Hi")'
            )
            continue
        model = (app.args or {}).get("model", {}).get("served_name", "<model>")
        print(
            f"\nApplication '{app.name}' is serving at {base}{prefix}/v1\n"
            f"  curl {base}{prefix}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
            f'    -d \'{{"model": "{model}", "messages": '
            f'[{{"role": "user", "content": "What is the capital of France?"}}]}}\'\n'
            f'  python: openai.OpenAI(base_url="{base}{prefix}/v1", api_key="unused")'
        )
    print("\nPress Ctrl-C to stop.")


def _cmd_keys(ns: argparse.Namespace) -> int:
    from runtime.gateway.auth import key_hash, new_key

    key = new_key()
    print(f"key:    {key}\nsha256: {key_hash(key)}")
    print("Give the key to its owner; put only the sha256 in the gateway's auth.keys.")
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    return int(ns.func(ns))


def _run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="start Ray locally and deploy a serve config; Ctrl-C stops")
    run.add_argument("config", type=Path)
    run.add_argument("--address", default=None, help="an existing Ray cluster (default: new)")
    run.add_argument(
        "--placement-wait-s",
        type=float,
        default=60.0,
        help="fail when a replica fits no node for this long (default 60; give an "
        "autoscaling cluster time to add one)",
    )
    run.add_argument("--verbose", action="store_true", help="stream replica logs to the terminal")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="a new local cluster's metrics port for Prometheus",
    )
    run.add_argument(
        "--ingress",
        choices=["proxy", "haproxy"],
        default="proxy",
        help=(
            "proxy: Serve's proxy actor, listening on the config's host only (default). "
            "haproxy: HAProxy forwarding straight to replicas (faster streaming; replica "
            "ports listen on all interfaces, so use it behind a firewall)"
        ),
    )
    run.add_argument(
        "--insecure-no-ray-auth",
        action="store_true",
        help="allow a new local cluster without Ray's token auth when the environment "
        "says RAY_AUTH_MODE=disabled (dangerous: docs/security.md)",
    )
    run.set_defaults(func=_cmd_run)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    _run_parser(sub)

    keys = sub.add_parser("keys", help="gateway API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new", help="a new key and its sha256").set_defaults(func=_cmd_keys)

    check = sub.add_parser("check", help="strictly validate serve config files")
    check.add_argument("configs", type=Path, nargs="+")
    check.set_defaults(func=_cmd_check)

    gen = sub.add_parser("kuberay", help="generate the serve configs of the KubeRay manifests")
    gen.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    gen.set_defaults(func=_cmd_kuberay)

    models = sub.add_parser("models", help="manage locally built models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    prepare = models_sub.add_parser("prepare", help="build models into the cache (idempotent)")
    prepare.add_argument("names", nargs="+", choices=["smollm2", "tiny-random"])
    prepare.set_defaults(func=_cmd_models)

    sessions = sub.add_parser("sessions", help="the agents' session store")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True)
    prune = sessions_sub.add_parser("prune", help="delete sessions idle for N days")
    where = prune.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--postgres-dsn-env", metavar="NAME", help="environment variable holding the PostgreSQL DSN"
    )
    where.add_argument("--sqlite", type=Path, metavar="FILE", help="a SQLite session store")
    prune.add_argument("--idle-days", type=float, required=True)
    prune.add_argument("--dry-run", action="store_true", help="count them, delete nothing")
    prune.set_defaults(func=_cmd_sessions_prune)
    return parser
