"""The SDK against the deployed agents, the same tests over handles and over HTTP
(through the gateway, with the local API key: tenant "local").

The `scripted*` agents run the real runtime (Serve replicas on the CPU worker,
LangGraph `create_agent` graphs, real tools, SQLite checkpoints) with a scripted
stand-in for the model's choices, so that multi-step tool sequences are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import runtime
from runtime import Session
from tests.support.keys import API_KEY, KEY_B
from tests.support.polling import wait_for
from tests.support.stack import Stack


@pytest.fixture(params=["handle", "http"])
def client(request: pytest.FixtureRequest, stack: Stack) -> Iterator[runtime.Client]:
    if request.param == "handle":
        c = runtime.connect(app="agents")  # the test process is a Ray driver
        assert type(c.transport).__name__ == "HandleTransport"
    else:
        c = runtime.connect(stack.url, api_key=API_KEY)
    yield c
    c.close()


def _running(session: Session) -> bool:
    return session.refresh().running


def test_lists_the_agents(client: runtime.Client) -> None:
    assert {"assistant", "planner", "scripted"} <= set(client.agents())


def test_tool_sequence_through_invoke_and_history(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    result = session.invoke("two tools please")
    assert [c.name for c in result.tool_calls] == ["calculator", "clock"]
    assert result.tool_calls[0].args == {"expression": "6*7"}
    assert result.tool_results[0].content == "42"
    clock = result.tool_results[1].content
    assert clock.startswith("20") and clock.endswith("+00:00")
    assert result.answer == f"the clock said {clock}"
    assert result.steps == 5  # model, tools, model, tools, model
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    history = session.history()
    assert [m.role for m in history] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert history[0].content == "two tools please"
    assert history[1].tool_calls[0].name == "calculator"
    assert history[2].tool_call_id == history[1].tool_calls[0].id
    assert history[-1].content == result.answer
    info = session.refresh()
    assert info.turns == 1 and not info.running and info.agent == "scripted"


@pytest.mark.parametrize(
    ("question", "result"), [("What is 17 * 23?", "391"), ("Multiply 19 by 6.", "114")]
)
def test_the_shipped_assistant_does_arithmetic_with_its_calculator(
    stack: Stack, question: str, result: str
) -> None:
    """local.yaml's `assistant` on SmolLM2 (temperature 0): its `call_when` rule makes
    the call, the model writes the expression, and its answer carries the result."""
    answer = (
        runtime.connect(stack.url, api_key=API_KEY).agent("assistant").session().invoke(question)
    )
    assert [c.name for c in answer.tool_calls] == ["calculator"]
    assert [r.content for r in answer.tool_results] == [result]
    assert result in answer.answer


def test_the_shipped_assistant_reads_the_clock_and_answers_plain_questions(stack: Stack) -> None:
    agent = runtime.connect(stack.url, api_key=API_KEY).agent("assistant")
    dated = agent.session().invoke("What's the date today?")
    assert [c.name for c in dated.tool_calls] == ["clock"]
    today = dated.tool_results[0].content[:10]  # the tool's own: 2026-12-03T...
    assert today in dated.answer
    plain = agent.session().invoke("What is the capital of Italy?")
    assert not plain.tool_calls and "Rome" in plain.answer


def test_stream_events_in_order(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    events = list(session.stream("add these"))
    kinds = [e.type for e in events]
    assert kinds[0] == "start" and kinds[-1] == "final"
    assert len({e.run_id for e in events}) == 1
    structural = [
        (e.type, e.node, e.tool_call.name if e.tool_call else None)
        for e in events
        if e.type in ("tool_call", "tool_result", "step")
    ]
    assert structural == [
        ("tool_call", "model", "calculator"),
        ("step", "model", None),
        ("tool_result", "tools", None),
        ("step", "tools", None),
        ("step", "model", None),
    ]
    tokens = "".join(e.text or "" for e in events if e.type == "token")
    final = events[-1].result
    assert final is not None and tokens == final.answer == "2+3=5"
    assert [e.index for e in events if e.type == "step"] == [1, 2, 3]


def test_second_turn_sees_the_first(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    session.invoke("add")
    result = session.invoke("hello again")
    assert result.answer == "echo: hello again"
    reopened = client.agent("scripted").session(session.id)
    roles = [m.role for m in reopened.history()]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]


def test_tool_error_goes_back_to_the_model(client: runtime.Client) -> None:
    result = client.agent("scripted").session().invoke("divide by zero")
    assert result.tool_results[0].is_error
    assert "division by zero" in result.tool_results[0].content
    assert result.answer == f"the tool said: {result.tool_results[0].content}"


def test_step_budget_then_session_continues(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    with pytest.raises(runtime.BudgetExceededError, match="8 steps"):
        session.invoke("loop forever")
    assert not session.refresh().running
    assert session.invoke("add").answer == "2+3=5"
    history = session.history()
    assert [m.role for m in history[:9]] == ["user"] + ["assistant", "tool"] * 4
    assert [m.content for m in history[-4:]] == ["add", "", "5", "2+3=5"]


def test_token_budget(client: runtime.Client) -> None:
    with pytest.raises(runtime.BudgetExceededError, match="budget of 1000"):
        client.agent("scripted").session().invoke("be wordy")


def test_time_budget(client: runtime.Client) -> None:
    session = client.agent("scripted-quick").session()
    with pytest.raises(runtime.BudgetExceededError, match="1 s"):
        session.invoke("slow")
    assert session.invoke("hi").answer == "echo: hi"


def test_cancel_from_the_client(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    events = session.stream("slow")
    assert next(events).type == "start"
    wait_for(lambda: _running(session), what="the run to hold the session")
    assert session.cancel() is True
    rest = list(events)
    assert rest[-1].type == "error" and rest[-1].error is not None
    assert rest[-1].error["type"] == "run_cancelled"
    assert not _running(session)
    assert session.cancel() is False  # nothing left to cancel
    assert session.invoke("hi").answer == "echo: hi"


def test_closing_the_stream_cancels_the_run(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    events = session.stream("tool then slow")
    assert next(e for e in events if e.type == "tool_result").tool_result is not None
    events.close()  # type: ignore[attr-defined]
    wait_for(lambda: not _running(session), timeout_s=10, what="the run to stop")
    # The completed steps are kept; the answer that was being generated is not.
    assert [m.role for m in session.history()] == ["user", "assistant", "tool"]


def test_busy_session_rejects(client: runtime.Client) -> None:
    session = client.agent("scripted").session()
    events = session.stream("slow")
    next(events)
    wait_for(lambda: _running(session), what="the run to hold the session")
    with pytest.raises(runtime.SessionBusyError, match="still running"):
        session.invoke("hi")
    session.cancel()
    list(events)


def test_busy_session_queues(client: runtime.Client) -> None:
    session = client.agent("scripted-queue").session()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(session.invoke, "half a second")
        wait_for(lambda: _running(session), what="the first run to hold the session")
        second = pool.submit(session.invoke, "second")
        assert first.result(timeout=30).answer == "done: half a second"
        assert second.result(timeout=30).answer == "echo: second"
    contents = [m.content for m in session.history()]
    assert contents == ["half a second", "done: half a second", "second", "echo: second"]


def test_busy_session_interrupts(client: runtime.Client) -> None:
    session = client.agent("scripted-interrupt").session()
    events = session.stream("slow")
    next(events)
    wait_for(lambda: _running(session), what="the first run to hold the session")
    assert session.invoke("newer").answer == "echo: newer"
    last = list(events)[-1]
    assert last.type == "error" and last.error is not None
    assert last.error["type"] == "run_cancelled" and "newer message" in last.error["message"]


def test_concurrent_messages_to_one_session_run_one_at_a_time(client: runtime.Client) -> None:
    session = client.agent("scripted-queue").session()
    barrier = threading.Barrier(4)

    def send(i: int) -> str:
        barrier.wait()
        return session.invoke(f"half a second {i}").answer

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert answers == [f"done: half a second {i}" for i in range(4)]
    history = session.history()
    assert len(history) == 8
    # Turns never interleave: every user message is followed by its own answer.
    for user, answer in zip(history[::2], history[1::2], strict=True):
        assert answer.content == f"done: {user.content}"


def test_tenants_are_isolated(client: runtime.Client, stack: Stack) -> None:
    session = client.agent("scripted").session()
    session.invoke("hi")
    if type(client.transport).__name__ == "HandleTransport":
        other = runtime.connect(app="agents", tenant="tenant-b")
    else:
        other = runtime.connect(stack.url, api_key=KEY_B)  # tenant-b's key
    with pytest.raises(runtime.SessionNotFoundError):
        other.agent("scripted").session(session.id)
    stolen = Session(other.transport, "scripted", session.info)
    for attempt in (stolen.history, stolen.cancel, stolen.delete, lambda: stolen.invoke("x")):
        with pytest.raises(runtime.SessionNotFoundError) as err:
            attempt()
        assert "hi" not in str(err.value)
    # Ids are per tenant: the other tenant's session of this id is its own, empty one
    # (a 409 would tell it that someone has a session of that id).
    own = other.agent("scripted").session(session.id, create=True)
    assert own.id == session.id and own.history() == []
    assert len(session.history()) == 2  # untouched
    own.delete()
    assert len(session.history()) == 2
    other.close()


def test_bad_input_is_refused_and_changes_nothing(client: runtime.Client) -> None:
    agent = client.agent("scripted")
    session = agent.session()
    with pytest.raises(runtime.InvalidInputError):
        session.invoke("")
    with pytest.raises(runtime.InvalidInputError, match="at most 32000"):
        session.invoke("x" * 32001)
    with pytest.raises(runtime.AgentNotFoundError):
        client.agent("no-such-agent").session()
    with pytest.raises(runtime.SessionNotFoundError):
        agent.session("no-such-session")
    with pytest.raises(runtime.InvalidInputError):
        agent.session("bad id!")
    own = agent.session("my-own-id-" + session.id[:8], create=True)
    with pytest.raises(runtime.SessionExistsError):
        agent.session(own.id, create=True)
    assert session.history() == [] and session.refresh().turns == 0


def test_delete_session(client: runtime.Client) -> None:
    agent = client.agent("scripted")
    session = agent.session()
    session.invoke("hi")
    session.delete()
    with pytest.raises(runtime.SessionNotFoundError):
        agent.session(session.id)
    with pytest.raises(runtime.SessionNotFoundError):
        session.history()


def test_async_api(client: runtime.Client) -> None:
    import asyncio

    async def main() -> list[str]:
        session = await client.agent("scripted").asession()
        result = await session.ainvoke("add")
        kinds = [e.type async for e in session.astream("hello")]
        assert kinds[0] == "start" and kinds[-1] == "final"
        history = await session.ahistory()
        return [result.answer, *(m.content for m in history[-2:])]

    assert asyncio.run(main()) == ["2+3=5", "hello", "echo: hello"]
