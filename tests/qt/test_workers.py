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
