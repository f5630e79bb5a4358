"""Config of an agent application: the ``args`` of ``runtime.apps:build_agent_app``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from runtime import names
from runtime.config.llm import LLMAppConfig, StrictModel
from runtime.config.placement import CPU_PLACEMENT_DOC, CpuPlacement
from runtime.config.router import ModelRoute, RouterConfig
from runtime.config.telemetry import SCENARIO, TelemetryConfig

_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_NAME = r"^[a-z][a-z0-9_-]{0,62}$"


class ServeLLM(StrictModel):
    """A model an agent calls: through its application's router (``router``: the
    model's fallbacks, external providers, the tenant's token limits), or, in an
    application without one, straight to an LLM deployment of this cluster by handle."""

    kind: Literal["serve"] = "serve"
    model: str = Field(min_length=1, description="The served model name (`served_name`).")
    app: str = Field(
        default=names.LLM_APP,
        min_length=1,
        description="Without a `router`: the Serve application of the LLM.",
    )
    deployment: str = Field(
        default=names.LLM_DEPLOYMENT, min_length=1, description="Without a `router`."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1, description="Per LLM call.")
    unavailable_wait_s: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description="How long an LLM call waits for its model (and its fallbacks) while "
        "none is available (restarting, scaled to zero, saturated), retrying with "
        "backoff; the turn's time budget still bounds it. 0: fail at once.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_gateway(cls, data: Any) -> Any:
        if isinstance(data, dict) and "gateway" in data:
            raise ValueError(
                "`gateway` is gone: agents route their LLM calls themselves, in one hop; "
                "give the agent application a `router:` with the gateway's `models` (and "
                "`rate_limits`) and drop `gateway` (docs/gateway.md)"
            )
        return data

    def route(self) -> ModelRoute:
        """The direct route of an application without a router."""
        return ModelRoute(name=self.model, app=self.app, deployment=self.deployment)


class ScriptStep(StrictModel):
    """One reply of the scripted model: a tool call or a final answer."""

    tool: str | None = Field(default=None, description="Call this tool ...")
    args: dict[str, Any] = Field(default_factory=dict, description="... with these arguments.")
    answer: str | None = Field(
        default=None,
        description="Answer with this text; `{last_tool_result}` and `{user}` are replaced.",
    )
    delay_s: float = Field(default=0.0, ge=0.0, le=600.0, description="Sleep before replying.")

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptStep:
        if (self.tool is None) == (self.answer is None):
            raise ValueError("a script step has exactly one of `tool` or `answer`")
        return self


class ScriptRule(StrictModel):
    when: str = Field(default="", description="Substring of the user's message; '' matches all.")
    system: str = Field(default="", description="Substring of the system prompt, if any.")
    steps: list[ScriptStep] = Field(min_length=1)
    repeat: bool = Field(default=False, description="Cycle through the steps forever.")


class ScriptedLLM(StrictModel):
    """A stand-in for an LLM's *choices*: replies follow a script, for deterministic tests
    and benchmarks of the runtime itself. It is not a model and is named as such."""

    kind: Literal["scripted"]
    rules: list[ScriptRule] = Field(min_length=1)
    tokens_per_word: int = Field(default=1, ge=1, description="For usage accounting.")


def _llm_kind(value: Any) -> str:
    kind = value.get("kind", "serve") if isinstance(value, dict) else getattr(value, "kind", None)
    return str(kind)


#: `kind` defaults to `serve`: most configs name a model of their own cluster.
LLMRef = Annotated[
    Annotated[ServeLLM, Tag("serve")] | Annotated[ScriptedLLM, Tag("scripted")],
    Discriminator(_llm_kind),
]


class Budgets(StrictModel):
    """Limits of one run (one user message); exceeding one ends the run with an error."""

    max_steps: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="LangGraph super-steps (a model call, a round of tool calls).",
    )
    max_tokens: int = Field(default=8192, ge=1, description="Prompt plus completion tokens.")
    max_seconds: float = Field(default=120.0, gt=0, le=3600, description="Wall-clock time.")


class AgentSpec(StrictModel):
    """One agent: a factory that builds a LangGraph graph, plus its options."""

    name: str = Field(pattern=_NAME, description="Used in routes and `client.agent(name)`.")
    factory: str = Field(
        pattern=_IMPORT_PATH,
        description="`module:function` taking an AgentContext, returning a compiled graph.",
    )
    system_prompt: str = Field(default="You are a helpful assistant.", max_length=20000)
    tools: list[str] = Field(
        default_factory=list, description="`module:attribute` of LangChain tools."
    )
    llm: LLMRef
    budgets: Budgets = Field(default_factory=Budgets)
    busy: Literal["reject", "queue", "interrupt"] = Field(
        default="reject",
        description="A message to a session whose turn is still running: refuse it (409), "
        "wait for the running turn, or cancel the running turn and take over.",
    )
    max_input_chars: int = Field(default=32000, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the factory.")
    scenario: str = Field(
        default="default",
        pattern=SCENARIO,
        description="The cost label of this agent's LLM calls (`runtime_cost_usd_total`, "
        "`runtime_usage_tokens_total`), e.g. the product feature it serves.",
    )

    @field_validator("tools")
    @classmethod
    def _tool_paths(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            if not re.match(_IMPORT_PATH, tool):
                raise ValueError(f"tool {tool!r} is not a `module:attribute` import path")
        if len(set(tools)) != len(tools):
            raise ValueError("a tool is listed twice")
        return tools


class SqliteStore(StrictModel):
    """One SQLite file: sessions survive restarts; replicas must share one machine."""

    kind: Literal["sqlite"] = "sqlite"
    path: str = Field(
        default="sessions.sqlite",
        description="Absolute, or relative to the runtime's cache folder (RUNTIME_CACHE_DIR).",
    )


class PostgresStore(StrictModel):
    """PostgreSQL: the store for clusters; any replica on any node serves any session."""

    kind: Literal["postgres"]
    dsn_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the DSN (the way to pass a password).",
    )
    dsn: str | None = Field(default=None, description="A DSN without a password.")
    pool_size: int = Field(default=8, ge=1, le=200)

    @model_validator(mode="after")
    def _one_dsn(self) -> PostgresStore:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("set exactly one of `dsn_env` or `dsn`")
        if self.dsn is not None and _has_password(self.dsn):
            raise ValueError(
                "`dsn` holds a password; config files are not secret stores: put the DSN "
                "in an environment variable (from a Kubernetes Secret) and name it in `dsn_env`"
            )
        return self


def _has_password(dsn: str) -> bool:
    """A password in key=value form, in a URL's query (``?password=``, libpq reads it
    there too), or as ``user:password@``."""
    if re.search(r"(?i)(^|[\s?&])password\s*=", dsn):
        return True
    match = re.match(r"^\w+://([^@/]*)@", dsn)
    return bool(match and ":" in match.group(1))


StoreConfig = Annotated[SqliteStore | PostgresStore, Field(discriminator="kind")]


class SessionsConfig(StrictModel):
    store: StoreConfig = Field(default_factory=SqliteStore)
    lease_ttl_s: float = Field(
        default=10.0,
        ge=1.0,
        le=600.0,
        description="A running turn holds its session for this long between heartbeats; "
        "after a replica dies, its sessions are free again within this time.",
    )
    poll_interval_s: float = Field(
        default=0.25,
        gt=0.0,
        le=10.0,
        description="How often a replica renews leases and looks for cancel requests, and "
        "how often a queued message looks for its session to be free.",
    )
    drain_s: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description="How long a stopping replica (scale-down, rollout) takes no new call "
        "and lets its running turns finish (Serve's graceful_shutdown_timeout_s of "
        "AgentServer; a serve config's own setting wins). Turns still running then end "
        "`unavailable`, and a retry with their key resumes them elsewhere. On Kubernetes "
        "keep the Pods' terminationGracePeriodSeconds above it.",
    )

    @model_validator(mode="after")
    def _poll_below_ttl(self) -> SessionsConfig:
        if self.poll_interval_s * 3 > self.lease_ttl_s:
            raise ValueError(
                f"poll_interval_s ({self.poll_interval_s}) must be at most a third of "
                f"lease_ttl_s ({self.lease_ttl_s}), or leases lapse between renewals"
            )
        return self


class AgentAppConfig(StrictModel):
    """The agents of one application, served by one deployment (`AgentServer`), and
    optionally their own LLM deployment (`LLMServer`) in the same application."""

    agents: list[AgentSpec] = Field(min_length=1)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    placement: CpuPlacement = Field(default="cpu-worker", description=CPU_PLACEMENT_DOC)
    llm_server: LLMAppConfig | None = Field(
        default=None,
        description="An LLM deployment (`LLMServer`, the args of build_llm_app) in this "
        "application, so that one application-level policy "
        "(runtime.autoscaling:AgentLLMPolicy) scales it ahead of the agents' backlog. "
        "Agents and gateways reach it as `{app: <this application>, deployment: LLMServer}`.",
    )
    router: RouterConfig | None = Field(
        default=None,
        description="The LLM router of this application's replicas: the same fields as "
        "the gateway's (`models`, `providers`, `rate_limits`, `ready_refresh_s`); agents "
        "name its models. Without one, each agent's `llm` names an LLM deployment.",
    )
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _routed_models(self) -> AgentAppConfig:
        for agent in self.agents:
            llm = agent.llm
            if not isinstance(llm, ServeLLM) or self.router is None:
                continue
            # (Compared with the defaults: a dumped config, as the builder passes its
            # replicas, sets every field.)
            if (llm.app, llm.deployment) != (names.LLM_APP, names.LLM_DEPLOYMENT):
                raise ValueError(
                    f"agent {agent.name!r}: `app` and `deployment` are for applications "
                    "without a `router`; name a model of the router instead"
                )
            if llm.model not in {m.name for m in self.router.models}:
                raise ValueError(f"agent {agent.name!r}: the router has no model {llm.model!r}")
        return self

    @field_validator("agents")
    @classmethod
    def _unique_names(cls, agents: list[AgentSpec]) -> list[AgentSpec]:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(dupes)}")
        return agents
