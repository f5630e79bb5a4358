"""agent-runtime: a distributed runtime for AI agents on Ray Serve, vLLM and KubeRay.

Public API (everything else is internal)::

    from runtime import LLMAppConfig, load_serve_config, deploy_config, LLMError
"""

from runtime.config import ConfigError, LLMAppConfig, check_serve_config, load_serve_config
from runtime.deploy import DeployError, deploy_config
from runtime.llm.errors import LLMError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DeployError",
    "LLMAppConfig",
    "LLMError",
    "__version__",
    "check_serve_config",
    "deploy_config",
    "load_serve_config",
]
