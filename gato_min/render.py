"""What a rollout shows: environments whose camera follows the body, and frames with a caption.

The GIFs of `gato_min.evaluate` and the chapters come from here. A MuJoCo body runs out of a
fixed camera's view in a second, so the camera tracks the torso and the floor is drawn wide; an
Atari frame is the screen itself. Each frame can carry the step and the return so far.
"""

from __future__ import annotations

import mujoco
import numpy as np
from PIL import Image, ImageDraw

from gato_min.envs import get_task, make_env


def episode_env(task: str, render: bool):
    """The rollout's environment: MuJoCo renders through a camera that tracks the torso (body 1)
    from the side and a little above, so the body stays in the frame however far it runs."""
    spec = get_task(task)
    if not render or spec.image_observations:  # Atari: the observation is the screen already
        return make_env(task)
    if spec.family != "mujoco":
        return make_env(task, render=True)
    camera = dict(type=mujoco.mjtCamera.mjCAMERA_TRACKING, trackbodyid=1, distance=4.0, elevation=-15.0)
    env = make_env(task, render=True, default_camera_config=camera)
    # gymnasium 1.4 renders with camera_id -1, which turns the camera back to a free one on every
    # frame; None keeps the tracking camera that default_camera_config sets up
    env.unwrapped.mujoco_renderer.camera_id = None
    # the floor is drawn only 20-40 m around the origin (a plane collides everywhere; its size is
    # for drawing): widen it to 1 km, with checker squares of 2 m, few enough edges that the
    # floor's motion reads at GIF frame rates (and compresses)
    model = env.unwrapped.model
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    if floor >= 0 and model.geom_type[floor] == mujoco.mjtGeom.mjGEOM_PLANE:
        model.geom_size[floor, :2] = np.maximum(model.geom_size[floor, :2], 1000.0)
        if model.geom_matid[floor] >= 0:  # the texture is a 2x2 checker: one repeat every 4 m
            model.mat_texrepeat[model.geom_matid[floor]] = model.geom_size[floor, :2] * 2 / 4.0
    return env


def render_frame(env, raw_observation, spec, step: int | None = None, episode_return: float = 0.0) -> np.ndarray:
    """The picture of the current state: the screen itself at its native size (Atari, image
    tasks), or MuJoCo's offscreen render; with `step` given, the step number and the return so
    far are written in its bottom-left corner."""
    if spec.image_observations:
        picture = np.asarray(raw_observation, dtype=np.uint8)
    else:
        picture = np.asarray(env.render(), dtype=np.uint8)
    if step is None:
        return picture
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    text = f"step {step}  return {episode_return:.1f}"
    left, top, right, bottom = draw.textbbox((0, 0), text)
    height = bottom - top + 4
    draw.rectangle((0, image.height - height, right - left + 4, image.height), fill=(0, 0, 0))
    draw.text((2 - left, image.height - height + 2 - top), text, fill=(255, 255, 255))
    return np.asarray(image)
