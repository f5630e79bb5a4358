"""The Python SDK: sessions with agents, over deployment handles or over HTTP.

Inside the Ray cluster (a driver connected with ``ray.init``, a job, another
deployment) ``connect()`` talks to the agents through Serve deployment handles, with
no HTTP hop; outside, it talks HTTP to the Serve endpoint. The API is the same::

    import runtime

    client = runtime.connect()     # or connect("http://127.0.0.1:8000", api_key=...)
    session = client.agent("assistant").session()  # a new session; .session(id) reopens one
    print(session.invoke("What is 2 + 3?").answer)
    for event in session.stream("And times 4?"):
        if event.type == "token":
            print(event.text, end="")
    print(session.history())

Every blocking method has an ``a``-prefixed coroutine twin (``ainvoke``, ``astream``,
``ahistory``, ...). Errors are :class:`runtime.AgentError` subclasses on both paths.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import tenacity

from runtime import _env, _sse, _streams, names
from runtime.agents.protocol import (
    Message,
    RunEvent,
    RunResult,
    SessionInfo,
)
from runtime.context import DEFAULT_TENANT
from runtime.errors import AgentError, AgentUnavailableError, SessionExistsError

T = TypeVar("T")

#: Where the gateway serves the agent routes.
AGENTS_PATH = "/v1/agents"


class Transport(Protocol):
    async def agents(self) -> list[str]: ...
    async def create_session(self, agent: str, session_id: str | None) -> SessionInfo: ...
    async def get_session(self, agent: str, session_id: str) -> SessionInfo: ...
    async def delete_session(self, agent: str, session_id: str) -> None: ...
    async def invoke(self, agent: str, session_id: str, text: str, key: str) -> RunResult: ...
    def stream(
        self, agent: str, session_id: str, text: str, key: str
    ) -> AsyncIterator[RunEvent]: ...
    async def history(self, agent: str, session_id: str) -> list[Message]: ...
    async def cancel(self, agent: str, session_id: str) -> bool: ...
    async def aclose(self) -> None: ...


class _Bridge:
    """Runs the SDK's coroutines for its blocking methods, on one private loop thread."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=cls._loop.run_forever, name="runtime-sdk", daemon=True
                ).start()
            return cls._loop

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, cls.loop()).result()

    @classmethod
    def iterate(cls, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield cls.run(agen.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(agen, "aclose", None)
            if closer is not None:
                cls.run(closer())


# -- transports ------------------------------------------------------------------------


class HandleTransport:
    """Serve deployment handles to the ``AgentServer`` of application ``app``."""

    def __init__(self, app: str, tenant: str) -> None:
        from ray import serve

        self._handle = serve.get_app_handle(app)
        self._tenant = tenant

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._handle, method).remote(self._tenant, *args)
        except Exception as exc:  # the runtime's errors, or a replica died, back-pressure
            raise AgentError.from_remote(exc) from None

    async def agents(self) -> list[str]:
        try:
            return list(await self._handle.agents.remote())
        except Exception as exc:
            raise AgentError.from_remote(exc) from None

    async def create_session(self, agent: str, session_id: str | None) -> SessionInfo:
        info: SessionInfo = await self._call("create_session", agent, session_id)
        return info

    async def get_session(self, agent: str, session_id: str) -> SessionInfo:
        info: SessionInfo = await self._call("get_session", agent, session_id)
        return info

    async def delete_session(self, agent: str, session_id: str) -> None:
        await self._call("delete_session", agent, session_id)

    async def invoke(self, agent: str, session_id: str, text: str, key: str) -> RunResult:
        result: RunResult = await self._call("invoke", agent, session_id, text, key)
        return result

    def stream(self, agent: str, session_id: str, text: str, key: str) -> AsyncIterator[RunEvent]:
        response = self._handle.options(stream=True).stream.remote(
            self._tenant, agent, session_id, text, key
        )
        # Closing the stream cancels the replica's generator, so the run is cancelled.
        return _streams.relay(response, AgentError.from_remote)

    async def history(self, agent: str, session_id: str) -> list[Message]:
        messages: list[Message] = await self._call("history", agent, session_id)
        return messages

    async def cancel(self, agent: str, session_id: str) -> bool:
        return bool(await self._call("cancel", agent, session_id))

    async def aclose(self) -> None:
        return None


class HttpTransport:
    """HTTP to the gateway's agent routes; the tenant is the API key's."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        self._base = url.rstrip("/") + AGENTS_PATH
        self._headers = {}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        # httpx clients belong to one event loop: one per loop that uses this transport.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self._base, headers=self._headers, timeout=self._timeout
            )
            self._clients[loop] = client
        return client

    async def _request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        import httpx

        try:
            response = await self._client().request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise AgentError.from_remote(exc) from None
        if response.status_code >= 400:
            raise _http_error(response.status_code, response.content)
        return response.json() if response.content else None

    async def agents(self) -> list[str]:
        return list((await self._request("GET", "/"))["agents"])

    async def create_session(self, agent: str, session_id: str | None) -> SessionInfo:
        body = {"id": session_id} if session_id is not None else {}
        return SessionInfo.model_validate(await self._request("POST", f"/{agent}/sessions", body))

    async def get_session(self, agent: str, session_id: str) -> SessionInfo:
        data = await self._request("GET", f"/{agent}/sessions/{session_id}")
        return SessionInfo.model_validate(data)

    async def delete_session(self, agent: str, session_id: str) -> None:
        await self._request("DELETE", f"/{agent}/sessions/{session_id}")

    async def invoke(self, agent: str, session_id: str, text: str, key: str) -> RunResult:
        path = f"/{agent}/sessions/{session_id}/invoke"
        data = await self._request("POST", path, {"message": text}, {IDEMPOTENCY_HEADER: key})
        return RunResult.model_validate(data)

    async def stream(
        self, agent: str, session_id: str, text: str, key: str
    ) -> AsyncIterator[RunEvent]:
        import httpx

        path = f"/{agent}/sessions/{session_id}/stream"
        body, headers = {"message": text}, {IDEMPOTENCY_HEADER: key}
        try:
            async with self._client().stream("POST", path, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    raise _http_error(response.status_code, await response.aread())
                async for data in _sse.payloads(response.aiter_text()):
                    yield RunEvent.model_validate_json(data)
        except httpx.HTTPError as exc:
            raise AgentError.from_remote(exc) from None

    async def history(self, agent: str, session_id: str) -> list[Message]:
        data = await self._request("GET", f"/{agent}/sessions/{session_id}/history")
        return [Message.model_validate(m) for m in data["messages"]]

    async def cancel(self, agent: str, session_id: str) -> bool:
        data = await self._request("POST", f"/{agent}/sessions/{session_id}/cancel")
        return bool(data["cancelled"])

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


#: The HTTP header of a turn's idempotency key (docs/agents.md: Retries).
IDEMPOTENCY_HEADER = "Idempotency-Key"


async def _retried(retry_s: float, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)``, called again while it raises AgentUnavailableError, for
    ``retry_s`` from the first failure: 0.25 s doubling to 4 s, with jitter (tenacity)."""
    if retry_s <= 0:
        return await fn(*args)
    first_failure: list[float] = []

    def stop(state: tenacity.RetryCallState) -> bool:
        """After ``retry_s`` from the first failure (a long turn that fails late is
        still retried)."""
        now = time.monotonic()
        first_failure[:] = first_failure or [now]
        return now - first_failure[0] >= retry_s

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(AgentUnavailableError),
        stop=stop,
        wait=tenacity.wait_exponential_jitter(initial=0.25, max=4.0, jitter=0.25),
        reraise=True,
    )

    async def call() -> T:
        return await fn(*args)

    return await retrying(call)


def _http_error(status: int, content: bytes) -> AgentError:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return AgentError.from_body(body, status)
    # Not the runtime's answer (it always sends an error body): a proxy's, e.g. Serve's
    # 500 when the gateway's replica died mid-request. Retrying is safe (the key).
    said = content[:80].decode("utf-8", "replace").strip()
    said = f" ({said!r})" if said else ""
    if status in (429, 500, 502, 503, 504):
        return AgentUnavailableError(f"the agent service answered HTTP {status}{said}; retry later")
    return AgentError(f"the agent service answered HTTP {status}{said}")


# -- the public API --------------------------------------------------------------------


class Session:
    """One conversation with an agent; its state lives in the cluster's session store."""

    def __init__(
        self, transport: Transport, agent: str, info: SessionInfo, retry_s: float = 60.0
    ) -> None:
        self._t = transport
        self.agent = agent
        self.id = info.id
        self.info = info
        self._retry_s = retry_s

    def __repr__(self) -> str:
        return f"Session(agent={self.agent!r}, id={self.id!r})"

    async def ainvoke(self, text: str, *, idempotency_key: str | None = None) -> RunResult:
        """Run one turn; its result. Raises AgentError (e.g. BudgetExceededError).

        The turn carries ``idempotency_key`` (a new random one by default). When the
        service is unavailable (a replica died, no replica, overloaded, the connection
        was cut) the call is sent again with the same key for up to ``retry_s``
        (``connect``), with backoff: the turn runs once, or resumes from its last
        checkpoint, and its message is never appended twice (docs/agents.md).
        """
        key = idempotency_key or uuid.uuid4().hex
        return await _retried(self._retry_s, self._t.invoke, self.agent, self.id, text, key)

    def invoke(self, text: str, *, idempotency_key: str | None = None) -> RunResult:
        return _Bridge.run(self.ainvoke(text, idempotency_key=idempotency_key))

    async def astream(
        self, text: str, *, idempotency_key: str | None = None
    ) -> AsyncIterator[RunEvent]:
        """Run one turn, yielding its events; stopping early cancels the run. Retried as
        ``ainvoke`` is, until its first event; a stream cut later raises
        AgentUnavailableError: stream or invoke again with the same ``idempotency_key``
        to resume (or get) the turn."""
        key = idempotency_key or uuid.uuid4().hex

        async def first() -> tuple[AsyncIterator[RunEvent], RunEvent | None]:
            events = self._t.stream(self.agent, self.id, text, key)
            return events, await anext(aiter(events), None)

        events, event = await _retried(self._retry_s, first)
        try:
            while event is not None:
                yield event
                event = await anext(aiter(events), None)
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()  # the run is cancelled (stopping early)

    def stream(self, text: str, *, idempotency_key: str | None = None) -> Iterator[RunEvent]:
        return _Bridge.iterate(self.astream(text, idempotency_key=idempotency_key))

    async def ahistory(self) -> list[Message]:
        return await self._t.history(self.agent, self.id)

    def history(self) -> list[Message]:
        return _Bridge.run(self.ahistory())

    async def acancel(self) -> bool:
        """Cancel the running turn, if any; whether one was running."""
        return await self._t.cancel(self.agent, self.id)

    def cancel(self) -> bool:
        return _Bridge.run(self.acancel())

    async def arefresh(self) -> SessionInfo:
        self.info = await self._t.get_session(self.agent, self.id)
        return self.info

    def refresh(self) -> SessionInfo:
        return _Bridge.run(self.arefresh())

    async def adelete(self) -> None:
        await self._t.delete_session(self.agent, self.id)

    def delete(self) -> None:
        _Bridge.run(self.adelete())


class Agent:
    def __init__(self, transport: Transport, name: str, retry_s: float = 60.0) -> None:
        self._t = transport
        self.name = name
        self._retry_s = retry_s

    async def asession(self, id: str | None = None, *, create: bool = False) -> Session:
        """A new session (``id=None``, or ``create=True`` with your own id), or an existing
        one by id (``SessionNotFoundError`` if it is not this tenant's)."""
        if id is None:
            info = await self._create_retried(uuid.uuid4().hex)
        elif create:
            info = await self._t.create_session(self.name, id)
        else:
            info = await self._t.get_session(self.name, id)
        return Session(self._t, self.name, info, self._retry_s)

    async def _create_retried(self, sid: str) -> SessionInfo:
        """A new session under an id chosen here, created again while the service is
        unavailable (for ``retry_s``, as turns are): a retry after a try whose answer
        was lost finds the session that try made (409) and takes it, so a retried
        creation makes one session, never two."""
        tried = False

        async def create() -> SessionInfo:
            nonlocal tried
            try:
                return await self._t.create_session(self.name, sid)
            except SessionExistsError:
                if not tried:  # a random id taken before any try of ours: not ours
                    raise
                return await self._t.get_session(self.name, sid)
            except AgentUnavailableError:
                tried = True
                raise

        return await _retried(self._retry_s, create)

    def session(self, id: str | None = None, *, create: bool = False) -> Session:
        return _Bridge.run(self.asession(id, create=create))


class Client:
    """Entry point of the SDK; see :func:`connect`."""

    def __init__(self, transport: Transport, retry_s: float = 60.0) -> None:
        self.transport = transport
        self.retry_s = retry_s

    def agent(self, name: str) -> Agent:
        return Agent(self.transport, name, self.retry_s)

    async def aagents(self) -> list[str]:
        return await self.transport.agents()

    def agents(self) -> list[str]:
        return _Bridge.run(self.aagents())

    async def aclose(self) -> None:
        await self.transport.aclose()

    def close(self) -> None:
        _Bridge.run(self.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    url: str | None = None,
    *,
    app: str = names.AGENTS_APP,
    tenant: str | None = None,
    api_key: str | None = None,
    timeout: float = 300.0,
    retry_s: float = 60.0,
) -> Client:
    """Connect to the agents of a running stack.

    ``retry_s``: how long a turn is retried while the service is unavailable (0: never;
    ``Session.ainvoke``). Each try waits ``timeout`` at most.

    - ``url`` given: HTTP to the gateway at that address, with ``api_key`` (default
      ``$RUNTIME_API_KEY``) as the bearer token; the key decides the tenant.
    - else, inside a Ray cluster (``ray.init`` done, or ``RAY_ADDRESS`` set): deployment
      handles to the agent application ``app``, no HTTP hop; ``tenant`` names the session
      owner (``default`` when None). Code in the cluster is trusted to name it.
    - else: HTTP to ``$RUNTIME_URL``, default ``http://127.0.0.1:8000``.

    Example::

        >>> import runtime
        >>> client = runtime.connect("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> client.agent("assistant").session().invoke("Hi").answer  # doctest: +SKIP
    """
    if url is None:
        import ray

        if not ray.is_initialized() and _env.ray_address() is not None:
            ray.init(address=_env.ray_address(), log_to_driver=False)
        if ray.is_initialized():
            return Client(HandleTransport(app, tenant or DEFAULT_TENANT), retry_s)
        url = _env.runtime_url()
    if tenant is not None:
        raise ValueError("over HTTP the tenant is the API key's; `tenant` is for handles")
    key = api_key if api_key is not None else _env.optional(_env.RUNTIME_API_KEY)
    return Client(HttpTransport(url, key, timeout), retry_s)
