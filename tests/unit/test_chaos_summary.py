"""The chaos report's arithmetic: which gap a fault is charged with."""

from tests.support.chaos import Call, summary


def test_a_call_held_up_by_the_next_fault_is_not_this_windows_gap() -> None:
    calls = [
        Call("turn", 0.0, 1.0, True),
        Call("turn", 1.0, 2.0, True),
        Call("turn", 9.5, 30.0, True),  # started here, held up by a fault at 10 s
        Call("turn", 11.0, 31.0, True),
    ]
    first, second = summary(calls, 0.0, 10.0), summary(calls, 10.0, 40.0)
    assert first["turn"]["longest_gap_s"] == 8.0  # from 2 s to the window's end
    assert (first["turn"]["requests"], second["turn"]["requests"]) == (3, 1)  # where they began
    assert second["turn"]["longest_gap_s"] == 20.0  # 10 s to 30 s: the next fault's
    assert second["turn"]["p99_ms"] == 20000.0
    assert "turn" not in summary(calls, 40.0, 50.0)


def test_a_success_that_started_before_the_window_closes_its_gap() -> None:
    calls = [Call("chat", 0.0, 1.0, True), Call("chat", 4.0, 12.0, True)]
    assert summary(calls, 10.0, 20.0) == {}  # no call started in it: nothing to report
    calls.append(Call("chat", 10.5, 11.0, False, "503"))
    out = summary(calls, 10.0, 20.0)["chat"]
    assert (out["succeeded"], out["longest_gap_s"]) == (0, 8.0)  # 12 s to 20 s
