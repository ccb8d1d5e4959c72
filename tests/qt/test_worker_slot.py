"""The worker slot's life cycle on real workers: a new job drops the old one, whose results never
arrive; the slot clears itself when its job ends; Cancel is reported once the thread has ended;
shutdown waits for every job the slot aborted."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.qt import workers

TIMEOUT = 10_000


def waiting(gate: threading.Event, started: threading.Event, value: str) -> str:
    """A plain call that returns ``value`` only once ``gate`` opens."""
    started.set()
    gate.wait(10)
    return value


def endless(started: threading.Event) -> Iterator[int]:
    i = 0
    while True:
        started.set()
        yield i
        i += 1
        threading.Event().wait(0.001)


def test_a_new_job_disconnects_the_old_one_so_its_result_never_arrives(qtbot) -> None:
    slot = workers.WorkerSlot()
    gate, started = threading.Event(), threading.Event()
    finished: list[str] = []
    ended: list[str] = []
    old = slot.call(
        lambda: waiting(gate, started, "old"),
        on_finish=finished.append,
        on_error=lambda exc: ended.append("error"),
        on_abort=lambda: ended.append("the slot heard the old job end"),
    )
    old.aborted.connect(lambda: ended.append("old aborted"))  # the worker's own signal
    assert started.wait(5)
    with qtbot.waitSignal(old.aborted, timeout=TIMEOUT):  # only once the old thread has ended
        new = slot.call(lambda: "new", on_finish=finished.append)
        assert slot.winding_down() == [old] and slot.busy()
        gate.set()  # the old call returns now, too late: its result must go nowhere
    qtbot.waitUntil(lambda: finished == ["new"], timeout=TIMEOUT)
    assert ended == ["old aborted"]  # the slot's callbacks heard nothing of the old job
    assert new.is_done() and not slot.busy() and slot.winding_down() == []


def test_finish_and_error_clear_the_slot_before_the_callback(qtbot) -> None:
    slot = workers.WorkerSlot()
    seen: list[tuple[str, bool]] = []

    def boom() -> Iterator[int]:
        yield 1
        raise CheckpointError("x.pt: truncated")

    def on_finish(result: object) -> None:
        seen.append((f"finished {result}", slot.busy()))
        # A callback may start the next job at once.
        slot.start(boom, on_error=lambda exc: seen.append((str(exc), slot.busy())))

    batches: list[list] = []
    slot.start(lambda: iter(range(3)), on_yield=batches.append, on_finish=on_finish)
    assert slot.busy()
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=TIMEOUT)
    assert seen == [("finished None", False), ("x.pt: truncated", False)]
    assert [i for b in batches for i in b] == [0, 1, 2]
    assert not slot.busy()


def test_cancel_keeps_the_job_until_its_thread_has_ended(qtbot) -> None:
    slot = workers.WorkerSlot()
    started = threading.Event()
    aborted: list[bool] = []
    worker = slot.start(lambda: endless(started), on_abort=lambda: aborted.append(worker.is_done()))
    assert started.wait(5)
    with qtbot.waitSignal(worker.aborted, timeout=TIMEOUT):
        slot.cancel()
        assert slot.busy()  # stopping, not stopped
    assert aborted == [True] and not slot.busy()


def test_shutdown_waits_for_every_job_it_aborted(qtbot) -> None:
    slot = workers.WorkerSlot()
    gates = [threading.Event() for _ in range(3)]
    jobs = []
    for gate in gates:
        started = threading.Event()
        jobs.append(slot.call(lambda g=gate, s=started: waiting(g, s, "x")))
        assert started.wait(5)
    assert slot.winding_down() == jobs[:2] and slot.busy()
    # The jobs are blocked inside a step, where no abort reaches them: they end only once the
    # gates open, a moment after shutdown began to wait.
    timers = [threading.Timer(0.2, gate.set) for gate in gates]
    for timer in timers:
        timer.start()
    assert slot.shutdown(10)
    assert all(job.is_done() for job in jobs)
    assert not slot.busy() and slot.winding_down() == []
    for timer in timers:
        timer.join()
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=TIMEOUT)
