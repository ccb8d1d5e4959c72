"""``gc_paused``: the cyclic collector is off inside (however nested, from any thread), back as it
was after, and what was made inside goes straight to the oldest generation."""

from __future__ import annotations

import gc
import threading

from ckpt_gui.core.memory import gc_paused


class Leaf:
    pass


def test_paused_inside_restored_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still holds it
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_threads_share_the_pause() -> None:
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    inside.wait(5)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's block is still open
    release.set()
    worker.join(5)
    assert gc.isenabled()


def test_what_was_made_inside_is_old_at_once() -> None:
    with gc_paused():
        made = [Leaf() for _ in range(1000)]
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert not any(id(o) in young for o in made)
    assert any(o is made[0] for o in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0  # nothing left frozen
