"""Deployment and default application names, in one place.

Serve configs name deployments by these (``deployments: [{name: LLMServer}]``), the
gateway and the agents reach each other's by them, and the SDK finds the agents by
``AGENTS_APP`` unless told another application.
"""

#: The deployment of ``runtime.apps:build_llm_app`` (and an agent app's ``llm_server``).
LLM_DEPLOYMENT = "LLMServer"
#: The deployment of ``runtime.apps:build_agent_app``.
AGENT_DEPLOYMENT = "AgentServer"
#: The deployment of ``runtime.apps:build_gateway_app``.
GATEWAY_DEPLOYMENT = "Gateway"

#: The application names of the shipped configs: defaults where a config names none.
LLM_APP = "llm"
AGENTS_APP = "agents"
GATEWAY_APP = "gateway"
