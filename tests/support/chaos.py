"""Constant mixed load on a stack while faults are injected, and what clients saw.

Load (threads, each with the official clients' and the SDK's default retries): agent
turns with a tool call through the gateway (the SDK over HTTP, one session per worker,
each turn's message unique), the same turns through deployment handles on the `pg`
app (sessions in PostgreSQL), chat completions and streamed chat completions (the
``openai`` client) on the tiny model, streams the client leaves after the first chunk,
and session creation. Faults: replicas of a deployment killed (Serve replaces them),
the engine process of an LLM replica killed, a worker node killed and a new one added,
PostgreSQL restarted, Redis restarted and blackholed. Each request is recorded with its
start, end and outcome; :func:`report` gives, per fault window, the share that
succeeded, p50/p99 latency, the longest stretch without a success, and for agent turns
the turns lost (answered, but not in the session's history) and run twice (a message or
its tool result in the history more than once).

Used by the cluster test (tests/cluster/test_chaos.py): its short form in ``make test``,
its full form in ``make chaos`` (longer, more faults, results written down).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.agent_helpers import kill, replicas
from tests.support.polling import wait_for

#: The scripted agent's turn with a tool call: "add ..." -> calculator(2+3) -> "2+3=5".
AGENT = "scripted-queue"
ANSWER = "2+3=5"
TURNS_PER_SESSION = 20


@dataclass
class Call:
    kind: str  # turn | pg-turn | model-turn | chat | stream | abandon | session
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class Fault:
    name: str
    at: float
    restored_s: float | None = None  # until the deployment had its replicas again


@dataclass
class Load:
    url: str
    key: str
    model: str
    calls: list[Call] = field(default_factory=list)
    sent: dict[str, list[str]] = field(default_factory=dict)  # session -> messages answered
    sessions: list[Any] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _clients: dict[str, Any] = field(default_factory=dict)  # app -> its handle client
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def _record(self, kind: str, work: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            work()
            call = Call(kind, started, time.monotonic(), True)
        except Exception as exc:  # what the client saw, after its retries
            call = Call(
                kind, started, time.monotonic(), False, f"{type(exc).__name__}: {exc}"[:300]
            )
        with self._lock:
            self.calls.append(call)

    def _session(self, agent: str, app: str | None = None) -> Any:
        """A new session of ``agent``: over HTTP through the gateway, or (``app``) by
        deployment handles into that agent application."""
        import runtime

        if app is None:
            client = runtime.connect(self.url, api_key=self.key)
        else:  # one client, one set of handles (each handle reports metrics while it lives)
            if app not in self._clients:
                self._clients[app] = runtime.connect(app=app)
            client = self._clients[app]
        session = client.agent(agent).session()
        with self._lock:
            self.sessions.append(session)
            self.sent[session.id] = []
        return session

    def _turns(self, app: str | None = None) -> None:
        """Turns on a new session every ``TURNS_PER_SESSION`` (a conversation's prompt
        grows with it, and the agent's token budget is per turn); through the gateway,
        or by handles into ``app``."""
        kind = "turn" if app is None else f"{app}-turn"
        session = self._session(AGENT, app)

        def turn() -> None:
            message = f"add #{next(self._ids)}"
            answer = session.invoke(message).answer
            assert answer == ANSWER, f"answered {answer!r}"
            with self._lock:
                self.sent[session.id].append(message)

        while not self.stop.is_set():
            if len(self.sent[session.id]) >= TURNS_PER_SESSION:
                session = self._session(AGENT, app)
            self._record(kind, turn)

    def _model_turns(self, agent: str) -> None:
        """Turns of an agent on a real model (its LLM calls wait for a restarting one)."""
        session = self._session(agent)

        def turn() -> None:
            message = f"Say hi to visitor {next(self._ids)} in one word."
            assert session.invoke(message).answer is not None
            with self._lock:
                self.sent[session.id].append(message)

        while not self.stop.is_set():
            self._record("model-turn", turn)

    def _chat(self, stream: bool) -> None:
        import openai

        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, timeout=60)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        }

        def chat() -> None:
            if stream:
                chunks = list(client.chat.completions.create(**body, stream=True))
                assert chunks[-1].choices[0].finish_reason in ("length", "stop"), chunks[-1]
            else:
                assert client.chat.completions.create(**body).usage is not None

        while not self.stop.is_set():
            self._record("stream" if stream else "chat", chat)
            time.sleep(0.2)

    def _abandon(self) -> None:
        """Streams the client leaves after their first chunk (the engine must drop
        them: :func:`engine_left`)."""
        import openai

        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, timeout=60)
        body = {"model": self.model, "messages": [{"role": "user", "content": "hi"}]}

        def leave() -> None:
            with client.chat.completions.create(**body, max_tokens=48, stream=True) as chunks:
                next(iter(chunks))  # then closed, mid-stream

        while not self.stop.is_set():
            self._record("abandon", leave)
            time.sleep(0.5)

    def _sessions(self) -> None:
        import runtime

        agent = runtime.connect(self.url, api_key=self.key).agent(AGENT)
        while not self.stop.is_set():
            self._record("session", agent.session)
            time.sleep(1.0)

    def start(
        self, turn_workers: int = 2, model_agent: str | None = None, pg_app: str | None = None
    ) -> list[threading.Thread]:
        """``model_agent``: also one worker running turns of that agent (a real model);
        ``pg_app``: one running turns by handles into that app, and one leaving streams."""
        targets: list[Callable[[], None]] = [self._turns] * turn_workers
        targets.append(self._sessions)
        if pg_app is not None:
            targets += [lambda: self._turns(pg_app), self._abandon]
        targets += [lambda: self._chat(False), lambda: self._chat(True)]
        if model_agent is not None:
            targets.append(lambda: self._model_turns(model_agent))
        threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in threads:
            t.start()
        return threads

    def finish(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        for t in threads:
            t.join(timeout=180)

    def integrity(self) -> dict[str, int]:
        """Turns lost and run twice, from each session's history."""
        lost = twice = 0
        for session in self.sessions:
            history = [(m.role, m.content) for m in session.history()]
            users = Counter(c for r, c in history if r == "user")
            tools = sum(1 for r, _ in history if r == "tool") if session.agent == AGENT else 0
            answered = self.sent[session.id]
            lost += sum(1 for m in answered if users[m] == 0)
            twice += sum(n - 1 for n in users.values() if n > 1)
            twice += max(0, tools - sum(users.values()))  # one calculator call per turn
        return {"lost": lost, "run_twice": twice}


def running(app: str, deployment: str) -> int:
    """The deployment's replicas Serve counts as RUNNING (started and ready)."""
    from ray import serve

    app_status = serve.status().applications.get(app)
    dep = app_status.deployments.get(deployment) if app_status else None
    return int(dep.replica_states.get("RUNNING", 0)) if dep else 0


def restored(
    app: str, deployment: str, killed: list[str], want: int, started: float, timeout_s: float = 300
) -> float:
    """Seconds from ``started`` until the deployment has ``want`` replicas again, none of
    them a killed one, each ready (RUNNING: its constructor, an engine's load included,
    has finished; nan: not within ``timeout_s``)."""

    def back() -> bool:
        names = {r.name for r in replicas(app, deployment)}
        return len(names) >= want and not names & set(killed) and running(app, deployment) >= want

    try:
        wait_for(back, timeout_s, "the replicas", interval_s=0.2)
    except AssertionError:
        return float("nan")
    return time.monotonic() - started


def inject(app: str, deployment: str, want: int, count: int | None = None) -> Fault:
    """Kill replicas of a deployment; the fault, with the time until Serve replaced them."""
    at = time.monotonic()
    killed = kill(app, deployment, count)
    fault = Fault(f"kill {app}/{deployment} x{len(killed)}", at)
    fault.restored_s = restored(app, deployment, killed, want, at)
    return fault


def outage(name: str, act: Callable[[], None]) -> Fault:
    """A server's outage: ``act`` takes it down and brings it back (blocking); the
    fault, with the time until it answered again."""
    at = time.monotonic()
    act()
    return Fault(name, at, time.monotonic() - at)


def kill_engine(app: str, want: int = 1) -> Fault:
    """Kill the engine process of one of the app's LLM replicas (the replica then ends
    itself, and Serve replaces it); in-flight streams are cut. Restored as for a killed
    replica (:func:`restored`): ``want`` replicas RUNNING, none of them that one."""
    from ray._private import state

    from tests.support.agent_helpers import replica_and_engine

    # A replica started just now loads its engine for a while: wait for it.
    wait_for(lambda: running(app, "LLMServer") >= want, 300, "the replicas", 1)
    replica, process = replica_and_engine(app)
    actors = state.actors(actor_state_name="ALIVE").values()
    name = next(a["Name"] for a in actors if a["Pid"] == replica.pid)
    at = time.monotonic()
    process.kill()
    fault = Fault(f"kill {app} engine process", at)
    fault.restored_s = restored(app, "LLMServer", [name], want, at)
    return fault


def kill_node(cluster: Any, label: str, node_args: dict[str, Any]) -> Fault:
    """Kill the worker node labelled ``worker-kind: label`` (no graceful exit: its
    raylet and every process on it die), then add a new one with ``node_args``, as
    KubeRay replaces a lost worker Pod; the fault, with the time until every
    deployment that ran there has its replicas again."""
    import ray

    dead = {
        n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Labels"].get("worker-kind") == label
    }
    node = next(n for n in cluster.worker_nodes if n.node_id in dead)
    from ray._private import state

    on_it = Counter(
        a["ActorClassName"].removeprefix("ServeReplica:")
        for a in state.actors(actor_state_name="ALIVE").values()
        if a["Address"]["NodeID"] in dead and a["ActorClassName"].startswith("ServeReplica:")
    )
    killed = [r.name for k in on_it for r in replicas(*k.split(":")) if r.node_id in dead]
    at = time.monotonic()
    cluster.remove_node(node, allow_graceful=False)
    cluster.add_node(**node_args)
    fault = Fault(f"kill {label} node, add a new one", at)
    deadline = at + 300  # one deadline for all (each wait returns nan after it)
    waits = [
        restored(*k.split(":"), killed, n, at, timeout_s=max(1.0, deadline - time.monotonic()))
        for k, n in on_it.items()
    ]
    fault.restored_s = max(waits, default=0.0)
    return fault


def engine_left(app: str, timeout_s: float = 30) -> int:
    """Requests still unfinished in the app's engine once the load has stopped (waited
    for up to ``timeout_s``): streams whose client left must not stay behind."""
    from ray import serve

    handle = serve.get_deployment_handle("LLMServer", app)
    left = -1

    def idle() -> bool:
        nonlocal left
        left = int(handle.engine_stats.remote().result(timeout_s=10)["unfinished_requests"])
        return left == 0

    with contextlib.suppress(AssertionError):  # the count says what is left
        wait_for(idle, timeout_s, "the engine's unfinished requests", interval_s=0.5)
    return left


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(calls: list[Call], start: float, end: float) -> dict[str, Any]:
    """Per kind: count, share ok and p50/p99 ms of the calls started in the window, and
    the longest stretch of the window in which no call of the kind succeeded (s).

    The gap counts every success that ended inside the window, whenever its call
    started, and none that ended after it: a call started here but held up by the next
    fault belongs to that fault's gap, not to this one's.
    """
    out: dict[str, Any] = {}
    window = [c for c in calls if start <= c.started < end]
    for kind in sorted({c.kind for c in window}):
        mine = [c for c in window if c.kind == kind]
        ok = [c for c in mine if c.ok]
        done = (c.ended for c in calls if c.kind == kind and c.ok and start <= c.ended <= end)
        ends = [start, *sorted(done), end]
        out[kind] = {
            "requests": len(mine),
            "succeeded": len(ok),
            "success_rate": round(len(ok) / len(mine), 4) if mine else None,
            "p50_ms": round(1000 * _quantile([c.ended - c.started for c in ok], 0.5), 1),
            "p99_ms": round(1000 * _quantile([c.ended - c.started for c in ok], 0.99), 1),
            "longest_gap_s": round(max(b - a for a, b in itertools.pairwise(ends)), 2),
            "errors": sorted({c.error for c in mine if not c.ok})[:5],
        }
    return out


def report(load: Load, faults: list[Fault], began: float, ended: float) -> dict[str, Any]:
    """The run: a fault-free baseline window (before the first fault), each fault's
    window (until the next), the whole run, and the sessions' integrity."""
    edges = [f.at for f in faults] + [ended]
    windows = {"baseline": summary(load.calls, began, faults[0].at if faults else ended)}
    seen: Counter[str] = Counter()
    for fault, until in zip(faults, edges[1:], strict=True):
        seen[fault.name] += 1  # a fault injected again gets a window of its own
        name = fault.name if seen[fault.name] == 1 else f"{fault.name} (again)"
        windows[name] = {
            "restored_s": None if fault.restored_s is None else round(fault.restored_s, 2),
            **summary(load.calls, fault.at, until),
        }
    return {
        "windows": windows,
        "total": summary(load.calls, began, ended),
        "integrity": load.integrity(),
        "faults": [{"name": f.name, "at_s": round(f.at - began, 2)} for f in faults],
        "calls": [
            {
                "kind": c.kind,
                "t_s": round(c.ended - began, 3),
                "ms": round(1000 * (c.ended - c.started), 1),
                "ok": c.ok,
            }
            for c in load.calls
        ],
    }


def write(result: dict[str, Any], out: Any, name: str = "chaos") -> None:
    """``result`` as JSON, Markdown and a PNG (successes and latency over time, faults
    marked) under ``out``."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(render(result))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    kinds = sorted({c["kind"] for c in result["calls"]})
    for i, kind in enumerate(kinds):
        mine = [c for c in result["calls"] if c["kind"] == kind]
        ok = [c["t_s"] for c in mine if c["ok"]]
        failed = [c["t_s"] for c in mine if not c["ok"]]
        top.scatter(ok, [i] * len(ok), marker="|", color="tab:green", s=80)
        top.scatter(failed, [i] * len(failed), marker="x", color="tab:red", s=40)
        bottom.scatter(
            [c["t_s"] for c in mine if c["ok"]],
            [c["ms"] for c in mine if c["ok"]],
            s=6,
            label=kind,
        )
    top.set_yticks(range(len(kinds)), kinds)
    top.set_title("requests over time (green: succeeded, red x: failed after retries)")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper right", fontsize=8)
    for axis in (top, bottom):
        for fault in result["faults"]:
            axis.axvline(fault["at_s"], color="grey", linestyle="--", linewidth=1)
    for fault in result["faults"]:
        top.annotate(fault["name"], (fault["at_s"], len(kinds) - 0.5), fontsize=7, rotation=90)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Chaos run (tests/support/chaos.py)",
        "",
        f"Integrity: {result['integrity']} (turns lost, run twice). gap: the longest "
        "stretch without a success.",
        "",
        "| window | replaced after s | kind | requests | success | p50 ms | p99 ms | gap s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for window, kinds in [*result["windows"].items(), ("whole run", result["total"])]:
        restored = kinds.get("restored_s", "-") if isinstance(kinds, dict) else "-"
        for kind, m in kinds.items():
            if kind == "restored_s":
                continue
            lines.append(
                f"| {window} | {restored} | {kind} | {m['requests']} | {m['success_rate']} "
                f"| {m['p50_ms']} | {m['p99_ms']} | {m['longest_gap_s']} |"
            )
    errors = {
        e
        for kinds in result["windows"].values()
        for k, m in kinds.items()
        if k != "restored_s"
        for e in m["errors"]
    }
    if errors:
        lines += ["", "Errors clients saw (after their retries):", ""]
        lines += [f"- `{e}`" for e in sorted(errors)]
    return "\n".join(lines) + "\n"
