"""The one module that starts Qt threads: every worker of the window runs here.

A ``Worker`` runs a core generator (or a plain call) on a private thread pool. Every ``yield`` is a
progress point and a cancel point: the worker checks its abort flag between yields. Results are
batched (at most one signal every ``BATCH_SECONDS``) so that a checkpoint with thousands of tensors
does not flood the event loop, and they are re-emitted on the GUI thread only if the worker has not
been aborted, so work the user abandoned never reaches a widget. A batch is sent only once the GUI
thread has handled the one before and had ``BATCH_SECONDS`` to itself since: when results come
faster than the window takes them in (half a million tiny tensors), batches grow instead of
queueing up, and the event loop still paints and answers between them. A worker also leaves the
GIL to the GUI thread while that thread takes in a batch and paints what it changed (and, before
starting, while it paints what started the job): a Python-heavy worker would otherwise make each
of the GUI thread's many calls into Python wait for the GIL (``GUI_TURN_SECONDS``).

Views never hold a ``Worker`` themselves: each job goes through a ``WorkerSlot``, which starts it,
drops the one before, clears itself when the job ends and waits for what it aborted on close.

The core keeps one pool of its own: ``ckpt_gui.core.chunks`` spreads a large tensor's chunks
over a ``ThreadPoolExecutor`` (``ckpt-stats`` threads) from whichever thread runs the generator,
a worker here or the command line's main thread. Those threads never touch Qt, and no chunk is
still being read once ``map_chunks`` returns or is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from ckpt_gui.core.errors import Cancelled
from ckpt_gui.qt.gui_turns import give_turn

BATCH_SECONDS = 0.03
# A generator that yields many items in quick succession does Python work between its yields
# (statistics of thousands of tiny tensors): it holds the GIL nearly all the time, and the GUI
# thread, whose every paint makes hundreds of calls into Python, would wait seconds for it call
# after call. Such a worker leaves the GIL free for PAUSE_SECONDS after every PACE_SECONDS in
# which it yielded PACE_ITEMS or more (one whose steps run in torch, with the GIL released,
# yields too rarely to pause).
PACE_SECONDS = 0.02
PAUSE_SECONDS = 0.002
PACE_ITEMS = 50
# The GUI thread's turn (``gui_turns``): a worker that has sent a batch (or is about to start)
# waits, with the GIL free, until the GUI thread has handled it and the repaint it asked for,
# but never longer than this.
GUI_TURN_SECONDS = 0.25
# The range of progress bars fed by workers: their progress is in bytes, which overflow a
# QProgressBar's int range, so it is shown in thousandths.
PROGRESS_STEPS = 1000

_pool: QThreadPool | None = None
_live: set[Worker] = set()  # keeps Python wrappers alive until their results are delivered


def pool() -> QThreadPool:
    """The thread pool every worker runs on (not the global one, so tests can count ours)."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(4)
        _pool.setExpiryTimeout(2000)
    return _pool


def active_workers() -> int:
    """Workers whose thread is still running."""
    return sum(1 for w in list(_live) if not w.is_done())


def abort_all(wait_ms: int = 5000) -> bool:
    """Abort every worker and wait for their threads; True when all stopped in time."""
    for worker in list(_live):
        worker.abort()
    return pool().waitForDone(wait_ms)


class Worker(QObject):
    """Runs ``make_iter()`` in the pool and reports on the GUI thread.

    Signals: ``yielded(list)`` batches of yielded items, ``finished(object)`` the generator's
    return value, ``failed(object)`` the exception, ``aborted()`` once stopped by ``abort()``.
    Exactly one of ``finished``, ``failed`` or ``aborted`` is emitted, unless aborted before the
    end, in which case only ``aborted`` is.
    """

    yielded = Signal(list)
    finished = Signal(object)
    failed = Signal(object)
    aborted = Signal()

    def __init__(
        self,
        make_iter: Callable[..., Iterable[Any]],
        discard: Callable[[Any], None] | None = None,
        with_abort: bool = False,
        batch_seconds: float = BATCH_SECONDS,
    ) -> None:
        """``with_abort``: call ``make_iter(is_aborted)`` so long steps inside one yield can poll
        the abort flag too (the core's ``cancel=`` callbacks)."""
        super().__init__()
        self._make_iter = make_iter
        self._with_abort = with_abort
        self._batch_seconds = batch_seconds
        self._discard = discard
        self._abort = threading.Event()
        self._thread_done = threading.Event()
        self._gui_turn = threading.Event()  # set: the worker may hold the GIL again
        # When the GUI thread last finished handling a batch; None while one waits for it.
        self._handled_at: float | None = time.monotonic()

    # --- GUI thread -------------------------------------------------------------------------
    def start(self) -> Worker:
        _live.add(self)
        self._give_gui_turn()  # what started the job is painted first
        pool().start(_Runnable(self))
        return self

    def abort(self) -> None:
        """Ask the work to stop at its next yield; nothing it produces is delivered any more."""
        if not self._abort.is_set():
            self._abort.set()
        self._gui_turn.set()  # a worker waiting for its turn stops at once

    def is_aborted(self) -> bool:
        return self._abort.is_set()

    def is_done(self) -> bool:
        return self._thread_done.is_set()

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until the thread has finished; True when it did within ``timeout`` seconds."""
        return self._thread_done.wait(timeout)

    @Slot(list)
    def _deliver_batch(self, items: list) -> None:
        try:
            if not self._abort.is_set():
                self.yielded.emit(items)
        finally:
            self._handled_at = time.monotonic()  # the worker may send the next one in a while
            self._give_gui_turn()

    def _give_gui_turn(self) -> None:
        """Let the worker go on (``_wait_for_gui``) once the GUI thread has handled what is
        queued for it now, and painted."""
        give_turn(self._gui_turn)

    @Slot(str, object)
    def _deliver_done(self, how: str, payload: object) -> None:
        _live.discard(self)
        # The work's closure holds what it worked on (a checkpoint's nodes, and through them its
        # memory map): a worker still referenced once done must not keep it. Dropped here, on
        # the GUI thread, as the closure may hold widgets.
        self._make_iter = _spent
        discard, self._discard = self._discard, None
        if self._abort.is_set() or how == "aborted":
            if how == "finished" and discard is not None:
                try:
                    discard(payload)  # e.g. close a checkpoint nobody will look at
                except Exception:  # noqa: BLE001 - best-effort clean-up of abandoned results
                    pass
            self.aborted.emit()
        elif how == "failed":
            self.failed.emit(payload)
        else:
            self.finished.emit(payload)

    # --- worker thread ----------------------------------------------------------------------
    def _run(self, courier: _Courier) -> tuple[str, object]:
        """The work, its batches sent through ``courier``; what the end is, to be sent last."""
        how, payload = "finished", None
        try:
            how, payload = self._iterate(courier)
        except Cancelled:
            how, payload = "aborted", None
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI, never raised there
            how, payload = ("aborted", None) if self._abort.is_set() else ("failed", exc)
        finally:
            self._thread_done.set()
        return how, payload

    def _wait_for_gui(self) -> None:
        self._gui_turn.wait(GUI_TURN_SECONDS)

    def _iterate(self, courier: _Courier) -> tuple[str, object]:
        self._wait_for_gui()
        iterable = self._make_iter(self.is_aborted) if self._with_abort else self._make_iter()
        if not isinstance(iterable, Generator):
            iterable = iter(iterable)
        batch: list = []
        last = paced = time.monotonic()
        items = 0  # yielded since ``paced``
        result: object = None
        try:
            while True:
                if self._abort.is_set():
                    return "aborted", None
                try:
                    item = next(iterable)
                except StopIteration as stop:
                    result = stop.value
                    break
                batch.append(item)
                now = time.monotonic()
                items += 1
                if now - paced >= PACE_SECONDS:
                    if items >= PACE_ITEMS:
                        time.sleep(PAUSE_SECONDS)  # the GUI thread's turn at the GIL
                        now = time.monotonic()
                    paced, items = now, 0
                handled = self._handled_at
                if (
                    handled is not None
                    and now - last >= self._batch_seconds
                    and now - handled >= self._batch_seconds
                ):
                    self._handled_at = None
                    self._gui_turn.clear()
                    courier.batch.emit(batch)
                    self._wait_for_gui()
                    batch, last = [], time.monotonic()
                    paced, items = last, 0
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()  # runs the generator's finally blocks on this thread
        if batch:
            courier.batch.emit(batch)
        return "finished", result


class _Courier(QObject):
    """Carries a worker's batches and its end from its pool thread to the GUI thread (queued).
    Made in the pool thread and gone with it, so that nothing of the worker itself is let go
    there: a callback a view disconnected from the worker is freed by the worker's next signal,
    on the thread that sends it, and with it whatever widget it held last (a widget deleted on
    a pool thread crashes the window)."""

    batch = Signal(list)
    done = Signal(str, object)


class _Runnable(QRunnable):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self._worker: Worker | None = worker
        self.setAutoDelete(True)

    def run(self) -> None:
        # PySide keeps the Python side of a pool's runnables after Qt deletes them: let go of
        # the worker, or it (and whatever its signals' receivers hold) would live on with it.
        worker, self._worker = self._worker, None
        if worker is None:
            return
        courier = _Courier()
        courier.batch.connect(worker._deliver_batch)
        courier.done.connect(worker._deliver_done)
        how, payload = worker._run(courier)
        # This thread's reference goes before the end is sent: the GUI thread, which keeps the
        # worker until it has delivered the end, lets go of it last.
        del worker
        courier.done.emit(how, payload)


def _spent(*_: object) -> Iterable[Any]:
    raise RuntimeError("a worker runs once")


def run_call(fn: Callable[[], Any]) -> Generator[None, None, Any]:
    """Wraps a plain call as a generator without yields, so it runs on a worker too."""
    return fn()
    yield  # pragma: no cover - makes this a generator


class WorkerSlot:
    """The one current job of a view, from start to end, plus the jobs it aborted.

    ``start`` aborts the job before and starts the next: the old worker is disconnected from
    its callbacks and asked to stop, so nothing of it (results, errors, its end) reaches the view
    any more. The slot clears itself when its job finishes, fails or, after ``cancel``, has
    stopped, before the callback runs, so a callback may start the next job at once. Aborted
    workers are remembered until their threads end: ``shutdown`` waits for them, so a closed view
    leaves no thread behind and no thread still reads a file the view is about to close. (The
    shape of Orange3's ``ConcurrentMixin``.)
    """

    def __init__(self) -> None:
        self._current: Worker | None = None
        self._links: list[tuple[Any, Callable[..., None]]] = []  # (signal, handler) to undo
        self._aborted: list[Worker] = []

    def start(
        self,
        make_iter: Callable[..., Iterable[Any]],
        *,
        on_yield: Callable[[list], None] | None = None,
        on_finish: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        discard: Callable[[Any], None] | None = None,
        with_abort: bool = False,
        batch_seconds: float = BATCH_SECONDS,
    ) -> Worker:
        """Abort the current job and run ``make_iter()`` (``make_iter(is_aborted)`` with
        ``with_abort``) on a worker: ``on_yield`` gets batches of its yields, ``on_finish`` its
        return value, ``on_error`` its exception, ``on_abort`` word that it stopped after
        ``cancel``. ``discard`` cleans up a result that arrives once nobody wants it."""
        self.abort()
        worker = Worker(
            make_iter, discard=discard, with_abort=with_abort, batch_seconds=batch_seconds
        )
        self._current = worker
        self._link(worker.yielded, on_yield, ends=False)
        self._link(worker.finished, on_finish, ends=True)
        self._link(worker.failed, on_error, ends=True)
        self._link(worker.aborted, on_abort, ends=True)
        return worker.start()

    def call(
        self,
        fn: Callable[[], Any],
        *,
        on_finish: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        discard: Callable[[Any], None] | None = None,
    ) -> Worker:
        """``start`` for a plain call: ``fn()``'s return value arrives through ``on_finish``."""
        return self.start(
            lambda: run_call(fn),
            on_finish=on_finish,
            on_error=on_error,
            on_abort=on_abort,
            discard=discard,
        )

    def abort(self) -> None:
        """Drop the current job: it stops at its next yield and reports nothing any more."""
        worker = self._current
        if worker is not None:
            self._release()
            worker.abort()
            self._aborted.append(worker)
        self._aborted = [w for w in self._aborted if not w.is_done()]

    def cancel(self) -> None:
        """Ask the current job to stop but keep it until it has: ``on_abort`` then says so (an
        export whose temporary file is gone only once its thread is)."""
        if self._current is not None:
            self._current.abort()

    def busy(self) -> bool:
        """A job is running (or, after ``cancel``, still stopping)."""
        return self._current is not None

    def winding_down(self) -> list[Worker]:
        """The aborted workers whose threads have not ended yet."""
        self._aborted = [w for w in self._aborted if not w.is_done()]
        return list(self._aborted)

    def shutdown(self, wait_s: float = 5.0) -> bool:
        """Abort the current job and wait for every aborted thread; True when all ended within
        ``wait_s`` seconds each. The slot can start new jobs afterwards."""
        self.abort()
        ok = all([w.wait(wait_s) for w in self._aborted])  # a list: wait for each, whatever
        self._aborted = [w for w in self._aborted if not w.is_done()]
        return ok

    def _link(self, signal: Any, callback: Callable[..., None] | None, ends: bool) -> None:
        if callback is None and not ends:
            return

        def handler(*args: Any) -> None:
            if ends:
                self._release()  # first: the callback may start the next job
            if callback is not None:
                callback(*args)

        signal.connect(handler)
        self._links.append((signal, handler))

    def _release(self) -> None:
        """Disconnect the current worker from the view and forget it."""
        links, self._links = self._links, []
        for signal, handler in links:
            signal.disconnect(handler)
        self._current = None
