"""The plot helpers (dlrun.training.plot_workers): a run's pictures drawn by other processes are the
same files as drawn in the run's own, and a picture a helper cannot draw is drawn in the run's own."""

from pathlib import Path

import numpy as np
import pytest

from dlrun.training import plot_workers
from dlrun.training.plots import plot_confusion_matrix, plot_samples, plot_training_curves

ROWS = [{"epoch": e, "train/loss": 1 / e, "train/acc": 0.5 + e / 20, "val/loss": 1.1 / e, "val/acc": 0.5 + e / 25, "lr": 0.001}
        for e in range(1, 6)]  # fmt: skip
CLASSES = ["cat", "dog", "emu"]
NAMES = ["curves.png", "confusion_matrix.png", "samples.png"]


def pictures(folder: Path) -> list:
    images = np.linspace(0, 1, 9 * 8 * 8, dtype=np.float32).reshape(9, 1, 8, 8)
    return [
        (plot_training_curves, (ROWS, folder / "curves.png"), {"title": "mlp + adam (lr 0.001) on digits"}),
        (plot_confusion_matrix, ([[5, 1, 0], [0, 6, 0], [2, 0, 4]], CLASSES, folder / "confusion_matrix.png"), {"title": "test"}),
        (plot_samples, (images, [0, 1, 2] * 3, [0, 1, 1] * 3, CLASSES, folder / "samples.png"), {}),
    ]


def drawn_here(folder: Path) -> dict[str, bytes]:
    folder.mkdir()
    for function, args, kwargs in pictures(folder):
        function(*args, **kwargs)
    return {name: (folder / name).read_bytes() for name in NAMES}


@pytest.fixture
def helpers():
    plot_workers.stop()
    plot_workers.start()
    yield
    plot_workers.stop()


def test_the_helpers_draw_the_same_files_as_the_run_s_own_process(tmp_path, helpers):
    (tmp_path / "aside").mkdir()
    assert plot_workers.draw(pictures(tmp_path / "aside")) == 3
    assert {name: (tmp_path / "aside" / name).read_bytes() for name in NAMES} == drawn_here(tmp_path / "here")
    assert plot_workers.running() == 2  # and they stay for the process's next run


def test_the_pictures_of_a_helper_that_died_are_drawn_here(tmp_path, helpers):
    gone = plot_workers._helpers[0].process
    gone.kill()
    gone.wait()
    (tmp_path / "aside").mkdir()
    assert plot_workers.draw(pictures(tmp_path / "aside")) == 1  # the live helper's one; the dead one's two drawn here
    assert {name: (tmp_path / "aside" / name).read_bytes() for name in NAMES} == drawn_here(tmp_path / "here")
    assert plot_workers.running() == 0  # a broken set is not kept for the next run...
    plot_workers.start()
    assert plot_workers.running() == 2  # ...which starts a whole one


def test_an_error_in_a_picture_is_raised_in_the_run_s_process(tmp_path, helpers):
    (tmp_path / "aside").mkdir()
    broken = pictures(tmp_path / "aside")
    function, (rows, _), kwargs = broken[0]
    broken[0] = (function, (rows, tmp_path / "no such folder" / "curves.png"), kwargs)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        plot_workers.draw(broken)
    assert sorted(p.name for p in (tmp_path / "aside").iterdir()) == ["confusion_matrix.png", "samples.png"]
    assert plot_workers.running() == 2  # an error in a picture is not a broken helper


def test_without_helpers_the_pictures_are_drawn_here(tmp_path):
    plot_workers.stop()
    (tmp_path / "aside").mkdir()
    assert plot_workers.draw(pictures(tmp_path / "aside")) == 0
    assert {name: (tmp_path / "aside" / name).read_bytes() for name in NAMES} == drawn_here(tmp_path / "here")


def test_a_helper_that_hangs_is_given_up_and_its_picture_drawn_here(helpers, monkeypatch):
    import time

    monkeypatch.setattr(plot_workers, "ANSWER_WITHIN_S", 0.5)
    started = time.monotonic()
    assert plot_workers.draw([(time.sleep, (3,), {})]) == 0  # the helper still sleeping at 0.5 s is killed
    assert 3 <= time.monotonic() - started < 6  # then the run's process does the work itself
    assert plot_workers.running() == 0


def test_with_one_cpu_there_are_no_helpers_and_the_pictures_are_drawn_here(tmp_path, monkeypatch):
    plot_workers.stop()
    monkeypatch.setattr(plot_workers.os, "sched_getaffinity", lambda pid: {0}, raising=False)  # as under `taskset -c 0`
    plot_workers.start()
    assert plot_workers.running() == 0
    (tmp_path / "aside").mkdir()
    assert plot_workers.draw(pictures(tmp_path / "aside")) == 0
    assert {name: (tmp_path / "aside" / name).read_bytes() for name in NAMES} == drawn_here(tmp_path / "here")


def test_a_picture_the_helper_cannot_even_unpickle_is_drawn_here_and_the_helper_goes_on(tmp_path, helpers, monkeypatch):
    """A drawing function from a module only this process has (here: one made up at run time) cannot
    be unpickled by a helper; that picture is drawn here, and the helper still draws the next."""
    import sys
    import types

    made_up = types.ModuleType("dlrun_made_up_pictures")
    made_up.draw = lambda path: path.write_text("drawn")
    made_up.draw.__module__, made_up.draw.__qualname__ = made_up.__name__, "draw"
    monkeypatch.setitem(sys.modules, made_up.__name__, made_up)
    (tmp_path / "aside").mkdir()
    only_here = (made_up.draw, (tmp_path / "aside" / "made_up.txt",), {})
    assert plot_workers.draw([only_here, *pictures(tmp_path / "aside")]) == 3
    assert (tmp_path / "aside" / "made_up.txt").read_text() == "drawn"
    assert plot_workers.running() == 2


def test_answers_read_late_are_all_seen_at_once(tmp_path, monkeypatch):
    """One helper answers several pictures before the run's process reads the first answer (a
    busy machine): every answer is read without waiting for the hang timeout."""
    import time

    plot_workers.stop()
    plot_workers.start(count=1)
    answer = plot_workers._Helper.answer
    monkeypatch.setattr(plot_workers._Helper, "answer", lambda self: (time.sleep(0.5), answer(self))[1])
    monkeypatch.setattr(plot_workers, "ANSWER_WITHIN_S", 60.0)
    try:
        texts = [(Path.write_text, (tmp_path / f"{i}.txt", str(i)), {}) for i in range(3)]
        started = time.perf_counter()
        assert plot_workers.draw(texts) == 3
        assert time.perf_counter() - started < 30  # not the hang timeout: no answer was left unseen in a buffer
        assert [(tmp_path / f"{i}.txt").read_text() for i in range(3)] == ["0", "1", "2"]
    finally:
        plot_workers.stop()
