"""The published bodies of the gateway's routes (FastAPI builds the OpenAPI from them).

The LLM routes read their body themselves (size limit first; every OpenAI field
passes through to the model, which validates it), so their request models only
describe it; the agent routes hold their bodies to these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from runtime.agents.protocol import Message

#: An optional field that is absent, never null, in the published schema.
Int1 = Annotated[int, Field(ge=1)] | SkipJsonSchema[None]
Temperature = Annotated[float, Field(ge=0, le=2)] | SkipJsonSchema[None]
Flag = bool | SkipJsonSchema[None]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | SkipJsonSchema[None] = None


class _LLMRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: Int1 = None
    temperature: Temperature = None
    stream: Flag = None


class ChatCompletionRequest(_LLMRequest):
    """OpenAI's chat completion request; other OpenAI fields pass through."""

    messages: list[ChatMessage]


class CompletionRequest(_LLMRequest):
    """OpenAI's completion request; other OpenAI fields pass through."""

    prompt: str


class AgentMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1)


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | SkipJsonSchema[None] = Field(
        default=None, description="Optional; generated when absent."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AgentList(BaseModel):
    agents: list[str]


class History(BaseModel):
    messages: list[Message]


class Cancelled(BaseModel):
    cancelled: bool


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int
    status: int


class ErrorBody(BaseModel):
    """Every error of every route (OpenAI's shape; ``status`` repeats ``code``)."""

    error: ErrorDetail


def request_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` publishing ``model`` as the body of a route that reads its body
    itself (nested models inlined: the schema stands alone)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _inline(schema, defs)}},
        }
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        # `default: null` is pydantic's way of saying optional; the body leaves it out.
        return {
            k: _inline(v, defs)
            for k, v in node.items()
            if not (k == "default" and v is None) and k != "title"
        }
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


#: The error responses every authenticated route may answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody}
    for status in (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503)
}
