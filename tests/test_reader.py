"""What a reader of an evaluation sees (gato_min.agent's frames, gato_min.evaluate's report):
rollout GIFs that follow the body and say the step and return, a score chart whose labels
clear their intervals, and report folders that are never written over by other settings."""

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from gato_min.agent import GatoAgent
from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings
from gato_min.envs import get_task, make_env, start_episode
from gato_min.evaluate import default_out, evaluate_run, save_gif, score_figure
from gato_min.model import GatoModel
from gato_min.optim import TrainSettings
from gato_min.render import episode_env, render_frame
from gato_min.train import train

TINY = GatoConfig.from_preset("cpu-tiny", context_length=96)
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _body_centroid(frame: np.ndarray):
    """(x, y) of the robot's pixels as fractions of the frame's width and height, or None when
    none is in view. The MuJoCo robots are tan and pink; the floor is black and pale green, the
    sky grey or blue, the caption white on black."""
    rgb = frame.astype(np.int64)
    body = (rgb[..., 0] - rgb[..., 2] > 40) & (rgb[..., 0] > rgb[..., 1] + 10)
    if body.sum() < 20:
        return None
    rows, cols = np.nonzero(body)
    return cols.mean() / frame.shape[1], rows.mean() / frame.shape[0]


def _in_middle_third(centroid) -> bool:
    """In view, and in the middle third across (the robots run along x, so that is where a fixed
    camera loses them; upright robots stand in the upper half, their feet and mirror image lower)."""
    return centroid is not None and 1 / 3 <= centroid[0] <= 2 / 3 and 0.2 <= centroid[1] <= 0.8


def _moved(env, metres: float) -> None:
    """Carry the robot `metres` forward along x (as if it had run there)."""
    state = env.unwrapped
    qpos = state.data.qpos.copy()
    qpos[0] += metres
    state.set_state(qpos, state.data.qvel.copy())


@pytest.mark.parametrize("task", ["halfcheetah", "hopper", "walker2d"])
def test_the_rollout_camera_follows_the_body(task):
    """5 m down the track the body is still in the middle third of the rollout's frame; the
    environment's own free camera, fixed at the start, has lost it."""
    spec = get_task(task)
    tracked, fixed = episode_env(task, render=True), make_env(task, render=True)
    for env in (tracked, fixed):
        start_episode(env, spec, 0)
        assert _in_middle_third(_body_centroid(render_frame(env, None, spec)))
        _moved(env, 5.0)
    assert _in_middle_third(_body_centroid(render_frame(tracked, None, spec)))
    assert not _in_middle_third(_body_centroid(render_frame(fixed, None, spec)))
    tracked.close()
    fixed.close()


def test_a_rollout_gif_keeps_the_body_in_view_and_is_small(tmp_path):
    torch.manual_seed(0)
    agent = GatoAgent(GatoModel(TINY), "halfcheetah")
    frames = agent.rollout(1, 1, record_frames=40, max_steps=40, progress=False).frames
    assert len(frames) == 40 and frames[0].shape == (192, 192, 3)
    assert _in_middle_third(_body_centroid(frames[0])) and _in_middle_third(_body_centroid(frames[-1]))
    path = save_gif(frames, tmp_path / "halfcheetah.gif", fps=50)
    assert path.stat().st_size < 150_000  # 20 frames of 32 colours; 200 frames of the trained cheetah: ~400 KB
    with Image.open(path) as gif:  # what the reader sees: the body keeps its colours through the palette
        shown = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    assert len(shown) == 20 and all(_in_middle_third(_body_centroid(frame)) for frame in (shown[0], shown[-1]))


def test_each_frame_carries_its_step_and_return():
    """Step 0 and step 30 of the same state differ only in the caption, in the bottom-left corner."""
    spec = get_task("halfcheetah")
    env = episode_env("halfcheetah", render=True)
    start_episode(env, spec, 0)
    plain, first, later = (
        render_frame(env, None, spec),
        render_frame(env, None, spec, 0, 0.0),
        render_frame(env, None, spec, 30, 41.5),
    )
    env.close()
    changed = np.nonzero((first != later).any(axis=2))
    assert len(changed[0]) > 20
    assert changed[0].min() >= 192 - 20 and changed[1].max() < 192 // 2  # rows near the bottom, left half
    captioned = np.nonzero((plain != first).any(axis=2))
    assert captioned[0].min() >= 192 - 20 and captioned[1].max() < 192 // 2
    # Atari: the screen at its native size, with the same caption
    pong = get_task("pong")
    screen = np.full((210, 160, 3), 144, np.uint8)
    framed = render_frame(None, screen, pong, 12, -3.0)
    assert framed.shape == (210, 160, 3) and (framed != screen).any()
    assert (framed[:-20] == screen[:-20]).all()


def test_score_labels_sit_beyond_their_error_bars():
    rows = [
        {"task": "halfcheetah", "score_mean": 40.0, "score_ci95": 25.0},
        {"task": "hopper", "score_mean": 95.0, "score_ci95": 12.0},
        {"task": "walker2d", "score_mean": -8.0, "score_ci95": 5.0},
        {"task": "pong", "score_mean": 3.0, "score_ci95": float("nan")},
    ]
    fig, ax = score_figure(rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [text for text in ax.texts if hasattr(text, "xy")]
    assert [label.get_text() for label in labels] == ["40", "95", "-8", "3"]
    for x, (row, label) in enumerate(zip(rows, labels)):
        mean, ci = row["score_mean"], 0.0 if math.isnan(row["score_ci95"]) else row["score_ci95"]
        box = label.get_window_extent(renderer)
        if mean >= 0:
            assert label.xy[1] >= mean + ci
            assert box.y0 >= ax.transData.transform((x, mean + ci))[1]  # in pixels: the text starts above the cap
        else:
            assert label.xy[1] <= mean - ci
            assert box.y1 <= ax.transData.transform((x, mean - ci))[1]
        assert ax.get_ylim()[0] <= label.xy[1] <= ax.get_ylim()[1]
    plt.close(fig)


def test_default_report_folders_say_what_was_evaluated(tmp_path):
    run = tmp_path / "run"
    assert default_out(run) == run / "eval"
    assert default_out(run, prompt_tokens=0) == run / "eval-no-prompt"
    assert default_out(run, prompt_tokens=48) == run / "eval-prompt48"
    assert default_out(run, memory="ring") == run / "eval-ring"
    assert default_out(run, seed=100, prompt_tokens=0, temperature=0.0) == run / "eval-no-prompt-t0-seed100"
    assert default_out(run, ["pong"], max_steps=500) == run / "eval-pong-max500"
    # every stored report sits in the folder its settings name by default
    reports = [path for path in RESULTS.glob("*/eval*/report.json") if "memory" in json.loads(path.read_text())]
    assert len(reports) >= 6
    for path in reports:
        report = json.loads(path.read_text())
        settings = {key: report[key] for key in ("seed", "prompt_tokens", "temperature", "memory")}
        settings |= {key: report[key] for key in ("readout", "target_return", "history") if key in report}
        assert default_out(path.parents[1], **settings) == path.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny run trained for two steps on random HalfCheetah data."""
    root = tmp_path_factory.mktemp("tiny")
    data = DataSettings(
        tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25
    )
    settings = TrainSettings(
        steps=2, batch_size=2, warmup_steps=1, log_every=1, eval_every=2, checkpoint_every=2, eval_batches=1
    )
    train(TINY, data, settings, root / "run", cache=root / "cache", progress=False)
    return root / "run", root / "cache"


def test_evaluate_never_writes_over_a_report_of_other_settings(tiny_run):
    run, cache = tiny_run
    quick = dict(episodes=1, num_envs=1, gif_steps=0, max_steps=5, cache=cache, progress=False)
    prompted = evaluate_run(run, **quick)
    unprompted = evaluate_run(run, prompt_tokens=0, **quick)
    assert prompted["out"] == str(run / "eval-max5") and unprompted["out"] == str(run / "eval-no-prompt-max5")
    stored = (run / "eval-max5" / "report.json").read_text()
    assert json.loads(stored)["prompt_tokens"] is None
    with pytest.raises(
        ValueError, match=r"eval-max5 holds a report of other settings \(prompt_tokens None -> 0\).*--out"
    ):
        evaluate_run(run, prompt_tokens=0, out=run / "eval-max5", **quick)
    with pytest.raises(ValueError, match="episodes 1 -> 2.*--overwrite"):
        evaluate_run(run, **{**quick, "episodes": 2})
    assert (run / "eval-max5" / "report.json").read_text() == stored
    evaluate_run(run, **quick)  # the same settings again: the report is regenerated
    replaced = evaluate_run(run, prompt_tokens=0, out=run / "eval-max5", overwrite=True, **quick)
    assert json.loads((run / "eval-max5" / "report.json").read_text())["prompt_tokens"] == 0
    assert replaced["tasks"][0]["returns"] == unprompted["tasks"][0]["returns"]
