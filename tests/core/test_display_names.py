"""Same-named files told apart by the shortest distinguishing parent folder."""

from __future__ import annotations

from ckpt_gui.core.display_names import name_key, short_names


def test_unique_names_stay_bare_and_twins_get_their_folder() -> None:
    names = short_names(["/w/run1/checkpoint.pth", "/w/run2/checkpoint.pth", "/w/x/model.pt"])
    assert names[name_key("/w/run1/checkpoint.pth")] == "run1/checkpoint.pth"
    assert names[name_key("/w/run2/checkpoint.pth")] == "run2/checkpoint.pth"
    assert names[name_key("/w/x/model.pt")] == "model.pt"


def test_the_distinguishing_folder_may_be_further_up() -> None:
    names = short_names(["/w/a/ckpt/last.pt", "/w/b/ckpt/last.pt", "/w/c/other/last.pt"])
    assert names[name_key("/w/a/ckpt/last.pt")] == "a/…/last.pt"
    assert names[name_key("/w/c/other/last.pt")] == "other/last.pt"


def test_the_same_file_twice_is_one_name() -> None:
    assert short_names(["/w/a.pt", "/w/./a.pt"]) == {name_key("/w/a.pt"): "a.pt"}
