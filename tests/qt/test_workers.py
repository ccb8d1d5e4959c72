"""The worker: batches of yields on the GUI thread, abort between yields, late results dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.qt import workers


def counting(n: int, delay: float = 0.0) -> Iterator[int]:
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield i
    return n * 10


def test_yields_arrive_in_order_then_the_return_value(qtbot) -> None:
    seen: list[int] = []
    worker = workers.Worker(lambda: counting(500))
    worker.yielded.connect(seen.extend)
    with qtbot.waitSignal(worker.finished, timeout=10_000) as done:
        worker.start()
    assert seen == list(range(500))
    assert done.args == [5000]


def test_results_come_back_on_the_gui_thread(qtbot) -> None:
    threads: list[threading.Thread] = []
    worker = workers.Worker(lambda: counting(3))
    worker.yielded.connect(lambda _: threads.append(threading.current_thread()))
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
    assert threads and all(t is threading.main_thread() for t in threads)


def test_abort_stops_between_yields_and_drops_late_results(qtbot) -> None:
    seen: list[int] = []
    finished: list[object] = []
    worker = workers.Worker(lambda: counting(10_000, delay=0.001))
    worker.yielded.connect(seen.extend)
    worker.finished.connect(finished.append)
    worker.start()
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=10_000)
    with qtbot.waitSignal(worker.aborted, timeout=10_000):
        worker.abort()
    assert worker.wait(5)
    count = len(seen)
    qtbot.wait(100)
    assert len(seen) == count < 10_000 and finished == []


def test_failure_is_reported_not_raised(qtbot) -> None:
    def boom() -> Iterator[int]:
        yield 1
        raise CheckpointError("x.pt: truncated")

    worker = workers.Worker(boom)
    with qtbot.waitSignal(worker.failed, timeout=10_000) as failed:
        worker.start()
    assert str(failed.args[0]) == "x.pt: truncated"


def test_abandoned_result_is_discarded(qtbot) -> None:
    discarded: list[object] = []
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "result"

    worker = workers.Worker(lambda: workers.run_call(slow), discard=discarded.append).start()
    assert started.wait(5)
    worker.abort()  # too late to stop it: its result must be cleaned up, not delivered
    release.set()
    finished: list[object] = []
    worker.finished.connect(finished.append)
    qtbot.waitUntil(lambda: discarded == ["result"], timeout=10_000)
    assert finished == []


def test_abort_all_waits_for_every_thread(qtbot) -> None:
    started = [workers.Worker(lambda: counting(100_000, delay=0.001)).start() for _ in range(3)]
    assert workers.abort_all(10_000)
    assert all(w.is_done() for w in started)
    assert workers.active_workers() == 0


def test_a_worker_starts_once_the_gui_thread_has_had_its_turn(qtbot, monkeypatch) -> None:
    """What started a job is painted before the job holds the GIL: the worker waits for the
    event loop (here it would wait 30 s without one)."""
    monkeypatch.setattr(workers, "GUI_TURN_SECONDS", 30.0)
    started = threading.Event()

    def job() -> Iterator[int]:
        started.set()
        yield 1

    worker = workers.Worker(job)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
        assert not started.wait(0.3)  # no event loop yet: the worker has not begun
    assert started.is_set()


def test_a_worker_waits_while_the_gui_thread_takes_in_a_batch(qtbot, monkeypatch) -> None:
    """After each batch the worker stops until the GUI thread has handled it: without an
    event loop, an endless generator makes no progress at all."""
    monkeypatch.setattr(workers, "GUI_TURN_SECONDS", 30.0)
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    batches: list[list[int]] = []
    worker = workers.Worker(endless, batch_seconds=0.01)
    worker.yielded.connect(batches.append)
    worker.start()
    qtbot.waitUntil(lambda: len(batches) >= 3, timeout=10_000)
    time.sleep(0.2)  # no event loop from here: the worker parks after at most one more batch
    before = len(produced)
    time.sleep(0.3)
    assert len(produced) == before
    worker.abort()  # wakes it: it stops at once
    assert worker.wait(5.0)
