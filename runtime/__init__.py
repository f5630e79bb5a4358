"""agent-runtime: a distributed runtime for AI agents on Ray Serve, vLLM and KubeRay.

Public API (everything else is internal)::

    import runtime

    client = runtime.connect()                      # handles in-cluster, else HTTP
    session = client.agent("assistant").session()
    print(session.invoke("What is 2 + 3?").answer)

    from runtime import load_serve_config, deploy_config   # serve configs
"""

from runtime.agents.protocol import (
    Message,
    RunEvent,
    RunResult,
    SessionInfo,
    ToolCall,
    ToolResult,
    Usage,
)
from runtime.config import ConfigError, LLMAppConfig, check_serve_config, load_serve_config
from runtime.deploy import DeployError, deploy_config
from runtime.errors import (
    AgentError,
    AgentNotFoundError,
    AgentUnavailableError,
    AuthenticationError,
    BudgetExceededError,
    InvalidInputError,
    LLMError,
    ModelCallError,
    PermissionDeniedError,
    RateLimitError,
    RunCancelledError,
    RunFailedError,
    SessionBusyError,
    SessionExistsError,
    SessionNotFoundError,
)
from runtime.sdk import Agent, Client, Session, connect

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentError",
    "AgentNotFoundError",
    "AgentUnavailableError",
    "AuthenticationError",
    "BudgetExceededError",
    "Client",
    "ConfigError",
    "DeployError",
    "InvalidInputError",
    "LLMAppConfig",
    "LLMError",
    "Message",
    "ModelCallError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunCancelledError",
    "RunEvent",
    "RunFailedError",
    "RunResult",
    "Session",
    "SessionBusyError",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "ToolCall",
    "ToolResult",
    "Usage",
    "__version__",
    "check_serve_config",
    "connect",
    "deploy_config",
    "load_serve_config",
]
