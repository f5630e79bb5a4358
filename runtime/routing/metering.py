"""Usage and cost of LLM answers (Ray's metrics export; docs/observability.md).

Counted where the router runs: in the gateway for clients' own calls, in the agent
replicas for their agents' calls. Labels are bounded: tenants come from the config
(or a token's tenant claim), agents and scenarios are configured names, ``model`` the
configured name of the model that answered; ``agent`` is ``-`` for a client's own
call, ``scenario`` its ``X-Scenario`` header or ``direct``.

    runtime_gateway_llm_tokens_total{tenant, model}      prompt + completion, as charged
    runtime_usage_requests_total{tenant, agent, scenario, model}
    runtime_usage_tokens_total{tenant, agent, scenario, model, direction}  input, output
    runtime_cost_usd_total{tenant, agent, scenario, model}   models with a per-token price

(``runtime_gateway_llm_tokens_total`` keeps the name it had when only the gateway
charged tokens: dashboards and alerts read it.)
"""

from __future__ import annotations

import functools

from ray.serve import metrics

from runtime.config.telemetry import TokenPrice
from runtime.context import CallContext


@functools.cache
def usage_metrics() -> UsageMetrics:
    """This process's counters (one set, however many routers it runs)."""
    return UsageMetrics()


class UsageMetrics:
    def __init__(self) -> None:
        self.tokens = metrics.Counter(
            "runtime_gateway_llm_tokens_total",
            "LLM tokens charged to tenants.",
            tag_keys=("tenant", "model"),
        )
        self.requests = metrics.Counter(
            "runtime_usage_requests_total",
            "LLM answers by tenant, agent, scenario, model.",
            tag_keys=("tenant", "agent", "scenario", "model"),
        )
        self.usage_tokens = metrics.Counter(
            "runtime_usage_tokens_total",
            "LLM tokens by tenant, agent, scenario, model.",
            tag_keys=("tenant", "agent", "scenario", "model", "direction"),
        )
        self.cost = metrics.Counter(
            "runtime_cost_usd_total",
            "Cost of LLM answers priced per token, in USD.",
            tag_keys=("tenant", "agent", "scenario", "model"),
        )

    def charged(self, tenant: str, model: str | None, tokens: int) -> None:
        if tokens > 0:
            self.tokens.inc(tokens, tags={"tenant": tenant, "model": str(model)})

    def used(
        self,
        ctx: CallContext,
        model: str,
        input_tokens: int,
        output_tokens: int,
        price: TokenPrice | None,
    ) -> None:
        """One answer of ``model``, for ``ctx``'s tenant, agent and scenario."""
        labels = {
            "tenant": ctx.tenant,
            "agent": ctx.agent,
            "scenario": ctx.scenario,
            "model": model,
        }
        self.requests.inc(tags=labels)
        for direction, count in (("input", input_tokens), ("output", output_tokens)):
            if count > 0:
                self.usage_tokens.inc(count, tags={**labels, "direction": direction})
        if price is not None:
            cost = (
                input_tokens * price.input_per_million + output_tokens * price.output_per_million
            ) / 1e6
            if cost > 0:
                self.cost.inc(cost, tags=labels)
