"""Atomic writes: every writer gets its own temporary file, and none is left behind."""

import threading

import matplotlib.pyplot as plt
import numpy as np

from gato_min.data.episodes import Episode
from gato_min.data.formats import read_d4rl, write_d4rl
from gato_min.files import atomic_write_text, temporary_path
from gato_min.plotting import save_figure


def test_temporary_paths_are_hidden_siblings_unique_per_call(tmp_path):
    target = tmp_path / "table.json"
    first, second = temporary_path(target), temporary_path(target)
    assert first != second
    assert first.parent == second.parent == tmp_path
    assert first.name.startswith(".table.json.") and first.suffix == ".tmp"


def test_concurrent_writers_of_one_file_never_mix(tmp_path):
    target = tmp_path / "shared.txt"
    texts = [str(i) * 200_000 for i in range(8)]
    errors = []

    def write(text):
        try:
            atomic_write_text(target, text)
        except OSError as error:  # a writer whose temporary another one renamed away
            errors.append(error)

    threads = [threading.Thread(target=write, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert target.read_text() in texts  # one writer's whole text, never a mixture or a torn file
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_figure_and_d4rl_writers_leave_no_temporary_files(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, "curve", tmp_path)
    plt.close(fig)
    rng = np.random.default_rng(0)
    episode = Episode(
        observations=rng.normal(size=(5, 3)).astype(np.float32),
        actions=rng.normal(size=(5, 2)).astype(np.float32),
        rewards=np.ones(5, dtype=np.float32),
        terminated=False,
    )
    write_d4rl(tmp_path / "data.hdf5", [episode, episode])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "data.hdf5"]
    assert len(read_d4rl(tmp_path / "data.hdf5")) == 2
