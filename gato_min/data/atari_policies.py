"""Scripted expert policies for Atari Pong and Breakout that read the emulator's RAM.

Gato imitates expert agents; for the two Atari tasks gato_min does not train one, it uses these
hand-written controllers instead. Each reads the 128-byte console RAM
(`env.unwrapped.ale.getRAM()`), predicts where the ball will meet the player's paddle, and picks
the button that brings the paddle there in time.

RAM addresses (found by watching bytes change while playing, then checked against the screen):

* Pong: ball x = ram[49] (grows towards our paddle on the right), ball y = ram[54] (0 while no
  ball is in play), own paddle y = ram[51], enemy paddle y = ram[50], scores ram[13] (enemy) and
  ram[14] (own). Minimal actions: 0 NOOP, 1 FIRE, 2 RIGHT (paddle up), 3 LEFT (paddle down),
  4 RIGHTFIRE (up), 5 LEFTFIRE (down).
* Breakout: paddle x = ram[72], ball x = ram[99], ball y = ram[101] (0 while no ball: press
  FIRE), lives = ram[57], score (BCD) = ram[76] (hundreds) and ram[77]. Minimal actions:
  0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT.

Two facts about the games shape the code:

1. Both games use the Atari *paddle* controller. The ALE turns a button into "turn the knob a
   fixed amount per frame", and the game shows the paddle easing towards the knob over a few
   frames. So the paddle has inertia: one 4-frame press of a button moves it about 23 pixels,
   spread over three agent steps (Pong: roughly +10, +10, +3 pixels). We fitted a linear model
   of this by least squares on random button presses ("paddle model" below) and plan with it:
   every step the policy tries all button sequences of the next few steps and keeps the first
   button of the best one (model-predictive control). A plain "move towards the target"
   controller overshoots and, worse, cannot reach the exact positions that matter.
2. Where the ball meets the paddle sets the bounce angle. In Pong the ball only leaves steeply
   (2 pixels per frame vertically) when it meets the top 3 or the bottom 3-4 pixels of the
   ~19-pixel hit window, and the computer opponent misses such shots; it returns every flatter
   one, so a policy that just blocks the ball rallies forever at 0 points. The Pong policy
   therefore scores each candidate paddle position by the expected worth of the resulting shot.
   In Breakout the ball can fall into a loop that never touches a brick; the policy notices the
   score standing still and then varies where it hits the ball.

The Breakout player also moves early: among plans that catch the ball equally well it prefers
the one whose paddle gets near the catch soonest (`_PaddlePlanner.lag`). A player that waits for
the last possible step pushes at one exact step, which a copy only meets if it is frame-exact;
moving early leaves slack, so a late or stray push can still be made good. Measured with
`python -m gato_min state-copy --task breakout` (an MLP copy from the true RAM state, DART data at
epsilon 0.2, 3 games): the copy of the last-moment player made 14-24 points a game, the copy of
the early mover 56-353. The Pong player keeps its last-moment plan: a push moves the paddle a
fixed ~23 pixels, so a resting paddle cannot reach every 3-pixel window of the steep shots, and
they are hit while the paddle is still moving; an early-moving Pong player copied worse (-21 to
-17 against -16 to -17).

Sticky actions must be OFF (`repeat_action_probability=0.0`): the planner assumes the button it
returns is the one the emulator applies. Frameskip is the v5 default of 4.

While tuning (ale-py 0.12.1, ten episodes from env seeds 0..9, no no-op starts, 27000-step
cap) the players scored Pong +21.0 ± 0.0 at epsilon 0 (every game 21-0) and Breakout +414.1 ±
8.4 (the last-moment version; all five lives eventually lost). With epsilon > 0 the player
still plans at every step and plays a random button instead of the planned one with chance epsilon (`_explore`; the
planned one stays in `intended`, the label of a DART collection). The reference returns of the
shipped tiers (epsilon 0, 0.1, 0.3), measured with the collection protocol (random no-op
starts), come from `python -m gato_min reference-returns --tasks pong breakout`: Pong +21.0,
+8.6, -13.5; Breakout 464.7, 151.1, 42.0 (20 episodes each; the last-moment version made 448.9,
54.2, 13.1: moving early mostly makes the player far harder to throw off with random buttons).

Pong with sticky actions off is deterministic: every seed gives the same episode at epsilon 0.
"""

from __future__ import annotations

import itertools

import numpy as np

RAM_SIZE = 128

# ---------------------------------------------------------------- shared helpers


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    return epsilon


def _check_ram(ram: np.ndarray) -> np.ndarray:
    if not isinstance(ram, np.ndarray) or ram.dtype != np.uint8 or ram.shape != (RAM_SIZE,):
        got = f"{type(ram).__name__} {getattr(ram, 'dtype', '')} {getattr(ram, 'shape', '')}"
        raise ValueError(f"ram must be a uint8 numpy array of length {RAM_SIZE}, got {got}")
    return ram


def _explore(player, ram: np.ndarray) -> int:
    """One step of an epsilon-greedy scripted player: it always plans (so its ball tracking and
    paddle model stay current), keeps the plan's button in `player.intended`, and plays a
    uniformly random button instead with probability `player.epsilon`. The paddle model then
    remembers the button that was played, since that is the one that moves the paddle."""
    ram = _check_ram(ram)
    explore = player.epsilon > 0 and player.rng.random() < player.epsilon
    player.intended = player.plan(ram)
    played = int(player.rng.integers(player.n_actions)) if explore else player.intended
    return player.remember(played)


def _fold(value: float, low: float, high: float) -> float:
    """Position of a ball moving freely to `value` between two walls at `low` and `high`."""
    span = high - low
    m = (value - low) % (2 * span)
    return low + (m if m <= span else 2 * span - m)


class _PaddlePlanner:
    """Linear model of a paddle-controller paddle, and the candidate plans to try with it.

    A plan is a sequence of `horizon` pushes u in {-1, 0, +1} (one per agent step, NOOP after
    it). The paddle's displacement during step t, after k of its 4 frames, is modelled as
    sum_j coef[k][j] * u[t - j] for j = 0..3: the push of this step and of the three before
    (least-squares fit, error under 1 pixel).
    """

    def __init__(self, coef_by_frame: tuple, low: float, high: float, horizon: int) -> None:
        self.coef = [None] + [np.asarray(c, dtype=float) for c in coef_by_frame]  # index = frame
        self.low, self.high = low, high
        self.plans = np.array(list(itertools.product((0, -1, 1), repeat=horizon)), dtype=float)
        self.effort = np.abs(self.plans).sum(axis=1)  # pushes in each plan

    def positions(self, pos: float, past: list[int], nframe: int) -> np.ndarray:
        """Paddle position `nframe` frames from now under every plan.

        past = [u(-1), u(-2), u(-3)]: the pushes of the last three steps, newest first."""
        steps, frame = divmod(max(0, nframe), 4)
        length = steps + 4
        u = np.zeros((len(self.plans), length + 3))  # column 3 + s holds the push of step s
        u[:, 0], u[:, 1], u[:, 2] = past[2], past[1], past[0]
        h = min(self.plans.shape[1], length)
        u[:, 3 : 3 + h] = self.plans[:, :h]
        x = np.full(len(self.plans), float(pos))
        for s in range(steps):
            x += sum(self.coef[4][j] * u[:, 3 + s - j] for j in range(4))
        if frame > 0:
            x += sum(self.coef[frame][j] * u[:, 3 + steps - j] for j in range(4))
        return np.clip(x, self.low, self.high)

    def lag(self, pos: float, past: list[int], target: float, steps: int) -> np.ndarray:
        """Mean distance from `target` over the next `steps` steps under every plan: small for plans
        that get there soon, so adding it makes a player move early rather than at the last moment."""
        path = np.stack([self.positions(pos, past, 4 * (t + 1)) for t in range(steps)])
        return np.abs(path - target).mean(axis=0)


# ---------------------------------------------------------------- Pong


class PongPolicy:
    """Pong expert: returns every ball, preferring the steep edge shots the opponent misses."""

    n_actions = 6
    VERSION = 2  # stored with collected data (gato_min.data.collect.behaviour_id); 2: plans every step
    # Push for each minimal action: -1 = up (y decreases), +1 = down.
    PUSH = {0: 0, 1: 0, 2: -1, 3: 1, 4: -1, 5: 1}
    BUTTON = {0: 0, -1: 2, 1: 3}  # push -> action (NOOP, RIGHT, LEFT)

    # Paddle model (y pixels) after 1..4 frames of a step; see _PaddlePlanner. The paddle is
    # redrawn every other frame, hence frames 1 and 3 repeat 0 and 2.
    COEF = ((0.0, 0.0, 0.0, 0.0), (2.97, 6.51, 1.59, 0.38), (2.97, 6.51, 1.59, 0.38), (10.07, 9.73, 2.4, 0.61))
    PADDLE_Y = (38, 203)  # paddle y range
    WALLS = (44, 206)  # ball y where it bounces off the top and bottom walls
    HIT_X = 188  # ball x on the last frame before it bounces off our paddle (1 pixel per frame)
    IDLE_Y = 119  # where to wait while the ball moves away
    HORIZON = 4  # steps of pushes searched (3**4 = 81 plans)

    # Worth of meeting the ball at offset (ball y - paddle y), measured frame by frame:
    # -2..0 leaves steeply upwards, 13..15 steeply downwards; the opponent missed every steep
    # upward shot we measured and some downward ones, and none of the flatter ones (1..12).
    # Outside -2..15 the ball is missed (16 only sometimes). Missing costs more the farther off.
    SHOT_VALUE = {
        **{o: 1.5 for o in (-2, -1, 0)},
        **{o: 0.0 for o in range(1, 13)},
        **{o: 1.0 for o in (13, 14, 15)},
        16: -3.0,
    }
    ERROR_WEIGHTS = (1, 2, 3, 2, 1)  # paddle model error of -2..+2 pixels, used to smooth values

    def __init__(self, epsilon: float = 0.0, seed: int = 0) -> None:
        self.epsilon = _check_epsilon(epsilon)
        self.rng = np.random.default_rng(seed)
        self.planner = _PaddlePlanner(self.COEF, *self.PADDLE_Y, self.HORIZON)
        self.offsets = np.arange(-250, 251)  # table of smoothed values, by offset
        self.values = np.array([self._smoothed_value(o) for o in self.offsets])
        self.reset()

    def _smoothed_value(self, offset: int) -> float:
        def raw(o: int) -> float:
            return self.SHOT_VALUE.get(o, -10.0 - 0.5 * min(abs(o + 2), abs(o - 16)))

        w = np.asarray(self.ERROR_WEIGHTS, dtype=float)
        half = len(w) // 2
        total = sum(wi * raw(offset + d) for d, wi in zip(range(-half, half + 1), w))
        return float(total / w.sum())

    def reset(self) -> None:
        self.prev_ball: tuple[int, int] | None = None
        self.past = [0, 0, 0]  # our last three pushes, newest first
        self.intended: int | None = None  # the planned button of the last step (before epsilon)

    def remember(self, action: int) -> int:
        """Tell the paddle model that `action` was played this step; returns it."""
        self.past = [self.PUSH[action]] + self.past[:2]
        return action

    def act(self, ram: np.ndarray) -> int:
        return _explore(self, ram)

    def plan(self, ram: np.ndarray) -> int:
        """The button planned for this RAM (no epsilon); updates the ball tracking. Call `remember`
        with the button actually played afterwards."""
        ball_x, ball_y, paddle_y = int(ram[49]), int(ram[54]), int(ram[51])
        cost = None
        if ball_y == 0:  # between points
            self.prev_ball = None
        else:
            if self.prev_ball is not None:
                vx, vy = ball_x - self.prev_ball[0], ball_y - self.prev_ball[1]
                if 0 < vx < 20 and ball_x < self.HIT_X:  # coming towards us
                    steps = (self.HIT_X - ball_x) / vx
                    hit_y = _fold(ball_y + vy * steps, *self.WALLS)
                    paddle = self.planner.positions(paddle_y, self.past, round(steps * 4))
                    idx = np.clip(np.round(hit_y - paddle).astype(int) - self.offsets[0], 0, len(self.offsets) - 1)
                    cost = -self.values[idx]
            self.prev_ball = (ball_x, ball_y)
        if cost is None:  # ball moving away or not in play: drift to the middle
            rest = self.planner.positions(paddle_y, self.past, 4 * (self.HORIZON + 3))
            cost = 0.1 * np.abs(rest - self.IDLE_Y)
        cost = cost + 0.01 * self.planner.effort  # among equals, push least
        push = int(self.planner.plans[int(np.argmin(cost)), 0])
        return self.BUTTON[push]


# ---------------------------------------------------------------- Breakout


class BreakoutPolicy:
    """Breakout expert: catches the ball near the paddle centre, varying the aim to break loops."""

    n_actions = 4
    VERSION = 3  # stored with collected data (gato_min.data.collect.behaviour_id); 3: moves early
    PUSH = {0: 0, 1: 0, 2: 1, 3: -1}  # +1 = right (x increases)
    BUTTON = {0: 0, 1: 2, -1: 3}

    # Paddle model (x pixels) after 1..4 frames of a step; see _PaddlePlanner.
    COEF = ((0.0, 5.33, 0.28, 0.01), (2.9, 8.18, 0.34, 0.0), (7.14, 9.51, 0.42, 0.04), (12.13, 10.16, 0.44, 0.04))
    PADDLE_X = (55, 191)
    WALLS = (55, 199)  # ball x where it bounces off the side walls
    HIT_Y = 177  # ball y on the last frame before it bounces off the paddle
    CENTRE = 9.0  # ball x - paddle x at the paddle centre (hits seen for offsets 1..17)
    HALF_WIDTH = 7.0  # never plan a catch farther than this from the centre
    AIMS = (3, 5, 7, 9, 11, 13, 15)  # offsets tried at random while the score stands still
    STALL_STEPS = 40  # steps without points before the aim starts to vary
    HORIZON = 4
    EAGER = 0.3  # weight of the lag cost: move towards the catch as soon as it is known

    def __init__(self, epsilon: float = 0.0, seed: int = 0, early: bool = True) -> None:
        """`early=False` gives the last-moment player this one replaced (version 2), kept for the
        comparison of `python -m gato_min state-copy --last-moment` and chapter 10."""
        self.epsilon = _check_epsilon(epsilon)
        self.rng = np.random.default_rng(seed)
        self.early = bool(early)
        self.planner = _PaddlePlanner(self.COEF, *self.PADDLE_X, self.HORIZON)
        self.reset()

    def reset(self) -> None:
        self.prev_ball: tuple[int, int] | None = None
        self.past = [0, 0, 0]  # our last three pushes, newest first
        self.intended: int | None = None  # the planned button of the last step (before epsilon)
        self.speed: int | None = None  # last seen horizontal ball speed (pixels per step)
        self.last_score: tuple[int, int] | None = None
        self.quiet_steps = 0  # steps since the score last changed
        self.aim = self.CENTRE
        self.descending = False

    def remember(self, action: int) -> int:
        """Tell the paddle model that `action` was played this step; returns it."""
        self.past = [self.PUSH[action]] + self.past[:2]
        return action

    def _velocity_x(self, x0: int, x1: int) -> int:
        """Horizontal velocity now, allowing for a side-wall bounce between the two readings.

        Of the direct difference and the two "bounced" explanations, keep the one whose speed is
        closest to the speed seen before (a wall bounce keeps the speed)."""
        direct = x1 - x0
        if self.speed is None:
            return direct
        low, high = self.WALLS
        options = [(abs(abs(direct) - self.speed), direct)]
        v = 2 * high - x1 - x0  # went right by v, bounced off the right wall
        if v > 0:
            options.append((abs(v - self.speed) - 0.5, -v))
        v = 2 * low - x1 - x0  # went left, bounced off the left wall
        if v < 0:
            options.append((abs(-v - self.speed) - 0.5, -v))
        return min(options)[1]

    def _lag(self, paddle_x: int, target: float) -> np.ndarray:
        return self.EAGER * self.planner.lag(paddle_x, self.past, target, self.HORIZON + 2)

    def act(self, ram: np.ndarray) -> int:
        return _explore(self, ram)

    def plan(self, ram: np.ndarray) -> int:
        """The button planned for this RAM (no epsilon); updates the ball tracking. Call `remember`
        with the button actually played afterwards."""
        paddle_x, ball_x, ball_y = int(ram[72]), int(ram[99]), int(ram[101])
        if ball_y == 0:  # no ball in play: serve
            self.prev_ball = None
            return 1

        score = (int(ram[76]), int(ram[77]))
        if score != self.last_score:
            self.last_score, self.quiet_steps, self.aim = score, 0, self.CENTRE
        else:
            self.quiet_steps += 1

        cost = None
        if self.prev_ball is not None:
            vx = self._velocity_x(self.prev_ball[0], ball_x)
            vy = ball_y - self.prev_ball[1]
            if vx != 0:
                self.speed = abs(vx)
            descending = vy > 0
            if descending and not self.descending and self.quiet_steps > self.STALL_STEPS:
                self.aim = float(self.rng.choice(self.AIMS))  # probably looping: vary the angle
            self.descending = descending
            if 0 < vy < 30 and ball_y < self.HIT_Y:  # falling towards the paddle
                steps = (self.HIT_Y - ball_y) / vy
                hit_x = _fold(ball_x + vx * steps, *self.WALLS)
                offset = hit_x - self.planner.positions(paddle_x, self.past, round(steps * 4))
                miss_risk = np.abs(offset - self.CENTRE) > self.HALF_WIDTH
                error = np.abs(offset - self.aim)
                cost = error + np.where(miss_risk, 100 + error, 0)
                if self.early:
                    cost = cost + self._lag(paddle_x, hit_x - self.aim)
        self.prev_ball = (ball_x, ball_y)
        if cost is None and self.early:  # ball rising: stay under it
            cost = self._lag(paddle_x, ball_x - self.CENTRE)
        elif cost is None:  # the last-moment player: only where the paddle comes to rest counts
            rest = self.planner.positions(paddle_x, self.past, 4 * (self.HORIZON + 2))
            cost = 0.1 * np.abs(rest - (ball_x - self.CENTRE))
        cost = cost + 0.01 * self.planner.effort
        push = int(self.planner.plans[int(np.argmin(cost)), 0])
        return self.BUTTON[push]


ATARI_POLICIES = {"pong": PongPolicy, "breakout": BreakoutPolicy}


# ---------------------------------------------------------------- does the ball survive 80 x 80?

# Where the ball can be told apart by its colour in the full 210 x 160 frame: (ball RGB, the
# screen rows searched, background RGB). Pong's walls share the ball's white and Breakout's
# paddle and lowest brick row its red, so the search skips those rows.
BALL_PIXELS = {
    "pong": ((236, 236, 236), (34, 194), (144, 72, 17)),
    "breakout": ((200, 72, 72), (94, 188), (0, 0, 0)),
}


def ball_contrast(task: str, steps: int = 1500, seed: int = 5, epsilon: float = 0.1) -> np.ndarray:
    """How visible the ball stays after the frame is shrunk to the model's 80 x 80 (box filter).

    The scripted player plays `steps` steps (epsilon-greedy, from episode seed `seed`); for every
    frame with the ball on screen the ball's pixels are painted over with the background, both
    frames are preprocessed, and the largest change of any 80 x 80 pixel channel (0-255) is the
    ball's contrast there. Returns one contrast per such frame; 0 would mean the ball vanished."""
    from gato_min.envs import get_task, make_env, preprocess_frame, start_episode

    if task not in BALL_PIXELS:
        raise KeyError(f"no ball colour known for task {task!r}; known: {sorted(BALL_PIXELS)}")
    colour, (top, bottom), background = BALL_PIXELS[task]
    env = make_env(task)
    frame = start_episode(env, get_task(task), seed)
    player = ATARI_POLICIES[task](epsilon=epsilon, seed=seed)
    contrasts = []
    for _ in range(steps):
        frame, _, terminated, truncated, _ = env.step(player.act(env.unwrapped.ale.getRAM()))
        if terminated or truncated:
            break
        ball = np.zeros(frame.shape[:2], bool)
        ball[top:bottom] = np.all(frame[top:bottom] == colour, axis=2)
        if ball.any():
            painted = frame.copy()
            painted[ball] = background
            change = np.abs(preprocess_frame(frame).astype(int) - preprocess_frame(painted).astype(int))
            contrasts.append(int(change.max()))
    env.close()
    return np.asarray(contrasts)
