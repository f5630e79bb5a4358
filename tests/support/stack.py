"""The test stack's serve config: the embedded default (serve_configs/local.yaml) plus
the tiny random model, scripted agents and the test applications, with the gateway's
test keys, limits, prices and redaction pattern, and traces to the tests' OTLP receiver.

``stack_config`` builds it; tests/cluster/conftest.py's ``stack`` fixture deploys it
(once per session) and yields a ``Stack``. The unit tier uses the builders alone
(``scripted_agent``, ``tiny_app``, ``agent_apps``) to check configs without Ray.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.gateway.auth import key_hash
from tests.support.keys import (
    KEY_B,
    KEY_FEW_TOKENS,
    KEY_ONE_AT_A_TIME,
    KEY_REVOKED,
    KEY_SCOPED,
    KEY_THREE_PER_MINUTE,
)
from tests.support.paths import SERVE_CONFIGS

#: Traces: the stack's serve config turns Serve's tracing on with the runtime's OTLP
#: exporter; every replica sends its spans to the tests' in-memory OTLP receiver
#: (``environment.SPANS``, whose endpoint the replicas inherit).
TRACING = {
    "enabled": True,
    "exporter_import_path": "runtime.telemetry.tracing:otlp_exporter",
    "sampling_ratio": 1.0,
}
GATEWAY_KEYS = [
    {"id": "b", "tenant": "tenant-b", "sha256": key_hash(KEY_B)},
    {"id": "old", "tenant": "tenant-b", "sha256": key_hash(KEY_REVOKED), "revoked": True},
    {
        "id": "c",
        "tenant": "tenant-c",
        "sha256": key_hash(KEY_SCOPED),
        "scopes": {"models": ["tiny-random"], "agents": ["scripted"]},
    },
    {"id": "d", "tenant": "tenant-d", "sha256": key_hash(KEY_ONE_AT_A_TIME)},
    {"id": "e", "tenant": "tenant-e", "sha256": key_hash(KEY_THREE_PER_MINUTE)},
    {"id": "f", "tenant": "tenant-f", "sha256": key_hash(KEY_FEW_TOKENS)},
]
#: The main gateway and the agents' routers count in one Redis (LIMITS_REDIS_ENV in
#: their replicas' environment), as the shipped gpu.yaml does: a tenant's own calls and
#: its agents' calls spend one token budget. tests/cluster/test_gateway_routing.py
#: deploys a second gateway with two replicas counting in Redis too.
LIMITS_REDIS_ENV = "RUNTIME_TEST_LIMITS_REDIS_URL"
GATEWAY_LIMITS = {
    "tenants": {"tenant-d": {"concurrency": 1}, "tenant-f": {"tokens_per_minute": 1}},
    "keys": {"e": {"requests_per_minute": 3}},
}

SMOL_GPU_PRICE = {"per_gpu_second": 0.0011}
TINY_PRICE = {"input_per_million": 0.5, "output_per_million": 1.5}
#: A configured redaction pattern of the test gateway (customer account numbers).
REDACT_PATTERN = r"acct-[0-9]{8}"

TINY_MODEL = "tiny-random"
TINY_MAX_MODEL_LEN = 512


def tiny_app(
    route_prefix: str | None = "/tiny", placement: str | None = "gpu-worker"
) -> dict[str, Any]:
    """The tiny model's application; on the test cluster's GPU worker by default
    (``placement=None``: the builder's default, any node, as on `make run`'s one node)."""
    app = {
        "name": "tiny",
        "route_prefix": route_prefix,
        "import_path": "runtime.apps:build_llm_app",
        "args": {
            "model": {"source": "tiny-random", "served_name": TINY_MODEL},
            "engine": {
                "max_model_len": TINY_MAX_MODEL_LEN,
                "max_num_seqs": 16,
                "chat_template": "chatml-tools",
                "tool_call_parser": "hermes",
            },
        },
    }
    if placement is not None:
        app["args"]["placement"] = placement
    return app


@dataclass(frozen=True)
class Stack:
    """The deployed test stack: base URLs and model names."""

    base_url: str  # SmolLM2's own routes (the tests expose them at /llm), ends in /v1
    tiny_url: str  # tiny random model's own routes, ends in /v1
    model: str
    tiny_model: str
    config: dict[str, Any]
    url: str  # the gateway (the Serve endpoint's root)


#: Replies of the scripted stand-in model (it stands in for the model's choices only).
SCRIPT_RULES: list[dict[str, Any]] = [
    {
        "when": "add",
        "steps": [
            {"tool": "calculator", "args": {"expression": "2+3"}},
            {"answer": "2+3={last_tool_result}"},
        ],
    },
    {
        "when": "two tools",
        "steps": [
            {"tool": "calculator", "args": {"expression": "6*7"}},
            {"tool": "clock", "args": {"timezone": "UTC"}},
            {"answer": "the clock said {last_tool_result}"},
        ],
    },
    {
        "when": "divide by zero",
        "steps": [
            {"tool": "calculator", "args": {"expression": "1/0"}},
            {"answer": "the tool said: {last_tool_result}"},
        ],
    },
    {
        "when": "loop",
        "repeat": True,
        "steps": [
            {"tool": "calculator", "args": {"expression": "1+1"}},
        ],
    },
    {
        "when": "tool then slow",
        "steps": [
            {"tool": "calculator", "args": {"expression": "1+1"}},
            {"answer": "finally done", "delay_s": 30},
        ],
    },
    {
        "when": "tool then two seconds",
        "steps": [
            {"tool": "calculator", "args": {"expression": "1+1"}},
            {"answer": "done after the tool", "delay_s": 2},
        ],
    },
    {"when": "slow", "steps": [{"answer": "finally done", "delay_s": 30}]},
    {"when": "half a second", "steps": [{"answer": "done: {user}", "delay_s": 0.5}]},
    {"when": "six seconds", "steps": [{"answer": "done", "delay_s": 6}]},
    {"when": "wordy", "steps": [{"answer": " ".join(["word"] * 1200)}]},
    {"steps": [{"answer": "echo: {user}"}]},
]
TOOLS = ["runtime.agents.tools:calculator", "runtime.agents.tools:clock"]


def scripted_agent(name: str, **overrides: Any) -> dict[str, Any]:
    agent = {
        "name": name,
        "factory": "runtime.agents.examples:assistant",
        "tools": TOOLS,
        "llm": {"kind": "scripted", "rules": SCRIPT_RULES},
        "budgets": {"max_steps": 8, "max_tokens": 1000, "max_seconds": 60},
        "busy": "reject",
    }
    agent.update(overrides)
    return agent


SCRIPTED_AGENTS = [
    scripted_agent("scripted"),
    scripted_agent("scripted-queue", busy="queue"),
    scripted_agent("scripted-interrupt", busy="interrupt"),
    scripted_agent("scripted-quick", budgets={"max_seconds": 1}),
]
SESSIONS = {"lease_ttl_s": 3, "poll_interval_s": 0.1}
ON_CPU_WORKER = {"num_cpus": 0.25, "label_selector": {"worker-kind": "cpu"}}
PG_DSN_ENV = "RUNTIME_TEST_PG_DSN"
QUICK = {"upscale_delay_s": 0.5, "downscale_delay_s": 3}
#: Serve's side of an autoscaled test deployment (the runtime's policies decide).
SCALED_1_TO_2 = {
    "min_replicas": 1,
    "max_replicas": 2,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2,
    "upscale_delay_s": 0,
    "downscale_delay_s": 0,
}
#: KV-cache target of the `kvp` app: the tiny model's tokens take 1 KiB of the CPU
#: engine's smallest cache (1 GiB), so a few long requests hold ~0.1-0.3 % of it.
KVP_TARGET = 0.0005
AUTO_SCALING = {
    **SCALED_1_TO_2,
    "policy": {
        "policy_function": "runtime.autoscaling:AgentPolicy",
        "policy_kwargs": {"target_turns_per_replica": 2, **QUICK},
    },
}


def tiny_llm_args(served_name: str) -> dict[str, Any]:
    args = copy.deepcopy(tiny_app()["args"])
    args["model"]["served_name"] = served_name
    return args


def llm_apps() -> list[dict[str, Any]]:
    """An LLM scaled by KV-cache pressure alone (its queue target is out of reach)."""
    return [
        {
            "name": "kvp",
            "route_prefix": None,
            "import_path": "runtime.apps:build_llm_app",
            "args": tiny_llm_args("kvp-tiny"),
            "deployments": [
                {
                    "name": "LLMServer",
                    "autoscaling_config": {
                        **SCALED_1_TO_2,
                        "policy": {
                            "policy_function": "runtime.autoscaling:LLMPolicy",
                            "policy_kwargs": {
                                "target_ongoing_per_replica": 1000,
                                "kv_cache_target": KVP_TARGET,
                                **QUICK,
                            },
                        },
                    },
                }
            ],
        }
    ]


def agent_apps(tmp: Path, pg_dsn: str) -> list[dict[str, Any]]:
    """Test applications: one replica hosting everything, and two replicas on PostgreSQL."""
    one_store = {"kind": "sqlite", "path": str(tmp / "one.sqlite")}
    pg_store = {"kind": "postgres", "dsn_env": PG_DSN_ENV}
    pg_agents = [scripted_agent("scripted"), scripted_agent("scripted-queue", busy="queue")]
    return [
        {
            # Scaled by runtime.autoscaling:AgentPolicy, quick knobs for the tests.
            "name": "auto",
            "route_prefix": None,
            "import_path": "runtime.apps:build_agent_app",
            "args": {
                "agents": [scripted_agent("scripted-auto")],
                "sessions": {
                    **SESSIONS,
                    "store": {"kind": "sqlite", "path": str(tmp / "auto.sqlite")},
                },
            },
            "deployments": [
                {
                    "name": "AgentServer",
                    "ray_actor_options": ON_CPU_WORKER,
                    "autoscaling_config": AUTO_SCALING,
                }
            ],
        },
        {
            # Agents with their own LLM, both scaled by one application-level policy.
            "name": "duo",
            "route_prefix": None,
            "import_path": "runtime.apps:build_agent_app",
            "args": {
                "agents": [scripted_agent("scripted-duo")],
                "sessions": {
                    **SESSIONS,
                    "store": {"kind": "sqlite", "path": str(tmp / "duo.sqlite")},
                },
                "llm_server": tiny_llm_args("duo-tiny"),
            },
            "autoscaling_policy": {
                "policy_function": "runtime.autoscaling:AgentLLMPolicy",
                "policy_kwargs": {
                    "agents": {"target_turns_per_replica": 2, **QUICK},
                    "llm": {"target_ongoing_per_replica": 4, "kv_cache_target": 1.0, **QUICK},
                },
            },
            "deployments": [
                {
                    "name": "AgentServer",
                    "ray_actor_options": ON_CPU_WORKER,
                    "autoscaling_config": SCALED_1_TO_2,
                },
                {"name": "LLMServer", "autoscaling_config": SCALED_1_TO_2},
            ],
        },
        {
            # Serve's back-pressure: one request at a time, one waiting; more are refused.
            "name": "narrow",
            "route_prefix": None,
            "import_path": "runtime.apps:build_agent_app",
            "args": {
                "agents": [scripted_agent("scripted-narrow")],
                "sessions": {
                    **SESSIONS,
                    "store": {"kind": "sqlite", "path": str(tmp / "narrow.sqlite")},
                },
            },
            "deployments": [
                {
                    "name": "AgentServer",
                    "num_replicas": 1,
                    "max_ongoing_requests": 1,
                    "max_queued_requests": 1,
                    "ray_actor_options": ON_CPU_WORKER,
                }
            ],
        },
        {
            "name": "one",
            "route_prefix": "/v1/one-agents",
            "import_path": "runtime.apps:build_agent_app",
            "args": {
                "agents": [scripted_agent("scripted")],
                "sessions": {**SESSIONS, "store": one_store},
            },
            "deployments": [
                {
                    "name": "AgentServer",
                    "num_replicas": 1,
                    "max_ongoing_requests": 1000,
                    "ray_actor_options": ON_CPU_WORKER,
                }
            ],
        },
        {
            "name": "pg",
            "route_prefix": "/v1/pg-agents",
            "import_path": "runtime.apps:build_agent_app",
            "args": {
                "agents": pg_agents,
                # A lease far longer than a replica's restart: a session of a killed
                # replica is free at once only because the next turn takes it over.
                "sessions": {**SESSIONS, "lease_ttl_s": 30, "store": pg_store},
            },
            "deployments": [
                {
                    "name": "AgentServer",
                    "num_replicas": 2,
                    "ray_actor_options": {
                        **ON_CPU_WORKER,
                        "runtime_env": {"env_vars": {PG_DSN_ENV: pg_dsn}},
                    },
                }
            ],
        },
    ]


def local_config() -> dict[str, Any]:
    """The embedded default, serve_configs/local.yaml (what `make run` serves)."""
    config: dict[str, Any] = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    return config


def stack_config(port: int, tmp: Path, pg_dsn: str, redis_url: str) -> dict[str, Any]:
    """The test stack: local.yaml on ``port`` with traces, the tiny model, the scripted
    agents and the test applications (sessions in ``tmp``, the `pg` app on ``pg_dsn``,
    the limits of the gateway and the agents in ``redis_url``)."""
    config = local_config()
    config["http_options"]["port"] = port
    config["tracing_config"] = TRACING
    config["applications"].append(tiny_app())
    agents = next(a for a in config["applications"] if a["name"] == "agents")
    agents["args"]["agents"] += SCRIPTED_AGENTS
    agents["args"]["sessions"] = {
        **SESSIONS,
        "store": {"kind": "sqlite", "path": str(tmp / "agents.sqlite")},
    }
    agents["deployments"][0].pop("autoscaling_config", None)  # two fixed replicas
    agents["deployments"][0]["num_replicas"] = 2
    config["applications"] += agent_apps(tmp, pg_dsn) + llm_apps()
    # The shipped configs reach the LLM by handle only; the tests also check its own
    # (vLLM's) HTTP routes, so they expose them at /llm.
    llm = next(a for a in config["applications"] if a["name"] == "llm")
    llm["route_prefix"] = "/llm"
    llm["args"]["placement"] = "gpu-worker"  # `make run`'s one node runs it anywhere
    # As in a cluster (gpu.yaml, KubeRay): the gateway and the agents on CPU workers only.
    for app in config["applications"]:
        if app["name"] in ("gateway", "agents"):
            app["args"]["placement"] = "cpu-worker"
    # Cost: SmolLM2 priced by its replicas' (logical) GPU time, the tiny model per token.
    llm["args"]["price"] = SMOL_GPU_PRICE
    gateway = next(a for a in config["applications"] if a["name"] == "gateway")
    gateway["args"]["models"].append(
        {
            "name": TINY_MODEL,
            "app": "tiny",
            "price": TINY_PRICE,
            # Its context is 512 tokens: the default 512 would leave no room for a prompt.
            "limits": {"default_max_tokens": 64, "max_tokens": TINY_MAX_MODEL_LEN},
        }
    )
    gateway["args"]["scenarios"] = ["support"]
    gateway["args"]["telemetry"] = {"redact_patterns": [REDACT_PATTERN]}
    planner = next(a for a in agents["args"]["agents"] if a["name"] == "planner")
    planner["scenario"] = "support"
    gateway["args"]["auth"]["keys"] = GATEWAY_KEYS
    limits = {**GATEWAY_LIMITS, "storage_url_env": LIMITS_REDIS_ENV}
    gateway["args"]["rate_limits"] = limits
    gateway["args"]["agent_apps"].append("narrow")
    # The agents route with the gateway's table and limits (local.yaml shares the table
    # through a YAML anchor; here both are set explicitly).
    agents["args"]["router"] = {
        "models": copy.deepcopy(gateway["args"]["models"]),
        "rate_limits": limits,
    }
    for app in (gateway, agents):  # these options replace the builder's: the label too
        app["deployments"][0]["ray_actor_options"] = {
            "num_cpus": 0.5,
            "label_selector": {"worker-kind": "cpu"},
            "runtime_env": {"env_vars": {LIMITS_REDIS_ENV: redis_url}},
        }
    return config
