"""The agent: a trained model acting in real environments, prompted with a demonstration.

Gato (Reed et al., 2022, Sec. 2.3-2.4, 4.1) acts as follows. Before an episode the model reads a
prompt, the start of a successful demonstration of the task (by default its first 1024
tokens). At every step it reads the observation's tokens and the separator, then samples the
action tokens one at a time, each conditioned on those before it; the decoded action goes to
the environment. The paper keeps Transformer-XL memory at deployment.

How far back the model looks is the `memory` choice:

* `"window"` (default): what the model sees always looks like a training sequence: the prompt,
  then whole timesteps of the episode, computed afresh from the first of them. The cache grows
  one timestep at a time; when the next timestep would not fit in `context_length`, it is
  rebuilt from the prompt and the most recent half of the room's worth of timesteps, in one
  call. The model was trained only on sequences that start at a timestep boundary with
  nothing before them, and this keeps it there (chapter 07: in the ring, the stored cheetah
  run's first-torque logits drift up to 16 away from those of the same window fed afresh).
* `"ring"`: Transformer-XL style. The keys and values of past tokens stay in a ring of
  `context_length` slots and the oldest give way to new ones, token by token, so the oldest
  visible token can sit mid-timestep and every cached key carries context from before the
  window. The paper's deployment memory; cheaper (no rebuilds), but out of the training
  distribution for a model without relative positions.

How gato_min does it (`GatoAgent.rollout`):

* B environments of one task run in lockstep, one row of the `KVCache` each. A step feeds
  [last action token of the previous step, observation tokens, '|'] in one call, then each
  further action token in a call of one token (D calls for D action tokens).
* The prompt is run through the model once per demonstration and its keys and values are
  installed in a row whenever that row starts an episode (`KVCache.install_prefix`), so a
  new episode in one row costs no prompt pass and leaves the other rows alone.
* In `"window"` memory the cache never wraps: it is rebuilt for all rows at once, each row
  from its own prompt and its episode's recent timesteps (`TaskCodec.timesteps_batch`).
* Action tokens are sampled from the model's distribution restricted to the ids the task can
  emit (`TaskCodec.action_ids`) at `temperature` (0 = the most likely token); the sampler is
  seeded, so an evaluation with the same seed and number of environments repeats exactly.
  `readout="mean"` (beyond the paper, chapter 09) reads a continuous action token as the mean
  of the model's distribution over the bins instead (the bin nearest to it is fed back): where
  the model spreads its mass over neighbouring bins, one sampled or most likely bin is a noisy
  or lopsided reading of what it predicts. Discrete actions (buttons) are always sampled.
* Acting feeds tokens cut from rows of `gato_min.sequence.build_batch` (`gato_min.codec`), the
  builder that makes training windows, so the agent acts on exactly the tokens training saw.
* Episode i is played from `start_episode(env, spec, seed + i)`, as the collector does, and
  takes the demonstration i modulo their number as its prompt.
* `history` caps the episode's own timesteps in the context (beyond the paper, chapter 11): with
  `history=1` a model reads only the current observation, as a Markov expert does, and cannot
  lean on copying its own last actions. A model trained on windows of K timesteps
  (`window_timesteps`, see `gato_min.data.training_set`) acts as it trained: at most K of its
  timesteps in view, and by default the prompt a prompted window of K had (none for K = 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from gato_min.codec import TaskCodec
from gato_min.data.episodes import Episode
from gato_min.data.reference import reference_returns
from gato_min.distributed import torch_threads
from gato_min.envs import model_observation, start_episode
from gato_min.model import CachePrefix, GatoModel, KVCache
from gato_min.render import episode_env, render_frame
from gato_min.sampling import prompt_timesteps
from gato_min.sequence import TokenizedEpisodes, build_batch
from gato_min.settings import check_number

READOUTS = ("token", "mean")  # how a continuous action is read from the model's bin distribution


@dataclass
class Rollout:
    """What `GatoAgent.rollout` played: per episode, in episode order."""

    task: str
    returns: np.ndarray  # (episodes,) float64
    lengths: np.ndarray  # (episodes,) int64
    seconds: float  # wall time of the whole rollout
    env_steps: int  # environment steps of all episodes
    frames: list[np.ndarray] = field(default_factory=list)  # rendered frames of episode 0, if asked

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / max(self.seconds, 1e-9)


class GatoAgent:
    """A `GatoModel` acting in one task's environments.

    `demonstrations`: episodes of the task whose first `prompt_tokens` tokens (whole timesteps)
    become the prompts; none or `prompt_tokens=0` acts without a prompt. Default prompt length:
    with `memory="ring"`, the whole context (the paper's 1024 tokens); with `memory="window"`,
    the share of the context that training gave prompts (`config.prompt_share`), so that the
    prompt and the episode fit one window as they did in training.
    """

    def __init__(
        self,
        model: GatoModel,
        task: str,
        demonstrations: list[Episode] | None = None,
        prompt_tokens: int | None = None,
        temperature: float = 1.0,
        memory: str = "window",
        readout: str = "token",
        target_return: float | None = None,
        history: int | None = None,
        window_timesteps: int = 0,
    ):
        if not isinstance(model, GatoModel):
            raise TypeError(f"model must be a GatoModel, got {type(model).__name__}")
        check_number("temperature (0 = the most likely token)", temperature, minimum=0)
        if target_return is not None:
            check_number("target_return", target_return)
        if prompt_tokens is not None:
            check_number("prompt_tokens", prompt_tokens, minimum=0, integer=True)
        if history is not None:
            check_number("history", history, minimum=1, integer=True)
        check_number("window_timesteps (0: the whole context)", window_timesteps, minimum=0, integer=True)
        if memory not in ("window", "ring"):
            raise ValueError(f"memory must be 'window' or 'ring', got {memory!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.model, self.config, self.memory = model.eval(), model.config, memory
        self.codec = TaskCodec(task, self.config)
        self.readout = "token" if self.codec.spec.discrete_actions else readout
        self.target_return = None
        if self.config.return_conditioning:  # default: ask for the expert's return
            target = reference_returns(task).get("expert") if target_return is None else target_return
            if target is None or not np.isfinite(target):
                raise ValueError(
                    f"the model is return-conditioned and task {task!r} has no expert reference return: "
                    f"pass target_return (got {target_return!r})"
                )
            self.target_return = float(target)
        self.task, self.temperature = task, float(temperature)
        self.device = next(model.parameters()).device
        tokens_per_timestep = self.codec.layout.tokens_per_timestep
        context = self.config.context_length
        if prompt_tokens is None and window_timesteps:  # a prompted training window's prompt
            prompt_tokens = prompt_timesteps(window_timesteps, self.config.prompt_share) * tokens_per_timestep
        elif prompt_tokens is None:
            prompt_tokens = context if memory == "ring" else int(self.config.prompt_share * context)
        history = history or window_timesteps or None
        room = context - (tokens_per_timestep if memory == "window" else 0)
        if not 0 <= prompt_tokens <= room:
            raise ValueError(
                f"prompt_tokens must lie in [0, {room}] (context_length={context}"
                + (
                    f", less one timestep of {tokens_per_timestep} tokens for the episode in window memory"
                    if memory == "window"
                    else ""
                )
                + f"), got {prompt_tokens}"
            )
        self.prompt_steps = prompt_tokens // tokens_per_timestep
        # the tokens the agent attends over: the prompt, then at most `history` timesteps of its episode
        self.context_length = min(context, prompt_tokens + (history or context) * tokens_per_timestep)
        if prompt_tokens and not self.prompt_steps:
            raise ValueError(
                f"prompt_tokens={prompt_tokens} is shorter than one timestep of {task} ({tokens_per_timestep} tokens)"
            )
        demonstrations = list(demonstrations or []) if self.prompt_steps else []
        for index, episode in enumerate(demonstrations):
            self._check_demonstration(episode, index)
        self.demonstrations = demonstrations
        self._prefixes: list[CachePrefix] | None = None

    # ------------------------------------------------------------------------------- prompts

    def _check_demonstration(self, episode: Episode, index: int) -> None:
        spec = self.codec.spec
        if episode.task and episode.task != self.task:
            raise ValueError(
                f"demonstration {index} comes from task {episode.task!r}; the agent acts in {self.task!r} "
                "and must be prompted with that task's episodes"
            )
        if tuple(episode.observations.shape[1:]) != tuple(spec.observation_shape):
            raise ValueError(
                f"demonstration {index} has observations of shape {episode.observations.shape[1:]}, "
                f"task {self.task!r} has {spec.observation_shape}: not an episode of this task"
            )
        expected = () if spec.discrete_actions else (spec.action_dim,)
        if tuple(episode.actions.shape[1:]) != expected:
            raise ValueError(
                f"demonstration {index} has actions of shape {episode.actions.shape[1:]}, "
                f"task {self.task!r} has {expected}: not an episode of this task"
            )

    def prompt_batch(self, episode: Episode):
        """The prompt of one demonstration: the tokens of its first `prompt_steps` timesteps."""
        data = TokenizedEpisodes([episode], self.codec.tokenizer, self.task, self.codec.spec)
        steps = np.arange(min(self.prompt_steps, int(data.lengths[0])))[None, :]
        return build_batch(data.layout, self.config, data.timesteps, steps, np.ones_like(steps, dtype=bool))

    def prefixes(self) -> list[CachePrefix]:
        """The keys and values of every prompt, computed once."""
        if self._prefixes is None:
            self._prefixes = []
            for episode in self.demonstrations:
                batch = self.prompt_batch(episode).to(self.device)
                cache = KVCache(self.config, 1, self.context_length, device=self.device)
                self.model.extend(batch, cache, last_only=True)
                self._prefixes.append(cache.prefix(0))
        return self._prefixes

    # ------------------------------------------------------------------------------- acting

    def sample(self, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Ids (B,) drawn from (B, vocab) logits restricted to the task's action ids (with
        `readout="mean"`, the bin of the distribution's mean)."""
        low, high = self.codec.action_ids
        legal = logits[:, low:high].float()
        if self.readout == "mean":  # the bins are evenly spaced, so the mean bin is the mean value's bin
            probs = torch.softmax(legal, dim=1)
            mean_bin = probs @ torch.arange(high - low, dtype=probs.dtype, device=probs.device)
            return mean_bin.round().long() + low
        if self.temperature == 0:
            return legal.argmax(dim=1) + low
        probs = torch.softmax(legal / self.temperature, dim=1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).reshape(-1).to(logits.device) + low

    @torch.no_grad()
    def act(
        self,
        observations: np.ndarray,
        cache: KVCache,
        generator: torch.Generator,
        previous: torch.Tensor | None = None,
        fresh: np.ndarray | None = None,
        returns_to_go: np.ndarray | None = None,
    ) -> tuple[np.ndarray, torch.Tensor]:
        """One step of B environments: feed their observations, sample their action tokens.

        `previous` (B, 1): the last action token of the previous step, fed now; `fresh` (B,)
        bool marks rows that have just started an episode, whose `previous` token is not kept;
        `returns_to_go` (B,): the return each row still asks for (return-conditioned models).
        Returns the environment actions and all their sampled ids (B, action_tokens)."""
        codec = self.codec
        batch = codec.observation_batch(
            observations, None if previous is None else previous.cpu().numpy(), returns_to_go
        )
        keep = None
        if previous is not None and fresh is not None and fresh.any():
            keep = torch.ones(batch.shape, dtype=torch.bool)
            keep[torch.from_numpy(fresh), 0] = False
        logits = self.model.extend(batch.to(self.device), cache, keep, last_only=True)
        ids = torch.empty((len(observations), codec.action_tokens), dtype=torch.long)
        for j in range(codec.action_tokens):
            ids[:, j] = self.sample(logits, generator).cpu()
            if j + 1 < codec.action_tokens:
                logits = self.model.extend(codec.action_batch(ids[:, j], j).to(self.device), cache, last_only=True)
        return codec.decode_actions(ids.numpy()), ids

    @torch.no_grad()
    def _rebuild(self, cache: KVCache, history: list[tuple[list, list, list]], prefixes: list) -> None:
        """Start the cache afresh: each row's prompt, then as many of its episode's latest whole
        timesteps (observations, action ids, returns-to-go) as fill half the room the prompt
        leaves (all of them, at least one step short of a full window), fed in one call."""
        per_step = self.codec.layout.tokens_per_timestep
        prompt = max((p.length for p in prefixes if p is not None), default=0)
        keep = max(0, (self.context_length - prompt) // per_step // 2)
        cache.reset()
        for row, prefix in enumerate(prefixes):
            if prefix is not None:
                cache.install_prefix([row], prefix)
        if keep == 0 or not any(obs for obs, _, _ in history):
            return
        observations = [
            np.stack(obs[-keep:]) if obs else np.zeros((0, *self.codec.spec.observation_shape)) for obs, _, _ in history
        ]
        actions = [
            np.stack(ids[-keep:]) if ids else np.zeros((0, self.codec.action_tokens), np.int64) for _, ids, _ in history
        ]
        returns = [np.array(rtg[-keep:], dtype=np.float64) for _, _, rtg in history]
        batch = self.codec.timesteps_batch(observations, actions, returns if self.target_return is not None else None)
        self.model.extend(batch.to(self.device), cache, batch.attention_mask, last_only=True)

    def rollout(
        self,
        episodes: int,
        num_envs: int = 8,
        seed: int = 0,
        max_steps: int | None = None,
        record_frames: int = 0,
        env_fn=None,
        progress: bool = True,
        threads: int | None = 1,
    ) -> Rollout:
        """Play `episodes` episodes on `num_envs` environments at once; episode i starts from
        seed `seed + i`. `record_frames` > 0 keeps that many rendered frames of episode 0 (Atari:
        the screen; MuJoCo: rendered offscreen); `max_steps` cuts episodes short (for tests);
        `env_fn(task, render)` builds the environments (default: the registry's). The model runs
        on `threads` torch threads (None: as set; see `gato_min.distributed.torch_threads`)."""
        if not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive int, got {episodes!r}")
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if max_steps is not None:
            check_number("max_steps (steps per episode)", max_steps, minimum=1, integer=True)
        check_number("record_frames", record_frames, minimum=0, integer=True)
        check_number("seed", seed, minimum=0, integer=True)
        spec = self.codec.spec
        num_envs = min(num_envs, episodes)
        envs = [(env_fn or episode_env)(self.task, record_frames > 0 and i == 0) for i in range(num_envs)]
        prefixes = self.prefixes()
        generator = torch.Generator().manual_seed(seed)
        cache = KVCache(self.config, num_envs, self.context_length, device=self.device)
        history: list[tuple[list, list, list]] = [([], [], []) for _ in range(num_envs)]  # (obs, ids, rtg)
        remaining = np.zeros(num_envs)  # the return each row still asks for (return-conditioned models)
        row_prefix: list[CachePrefix | None] = [None] * num_envs
        returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
        row_episode = np.full(num_envs, -1)
        observations = [None] * num_envs
        frames: list[np.ndarray] = []
        next_episode, env_steps, start = 0, 0, time.perf_counter()

        def begin(row: int) -> None:
            nonlocal next_episode
            if next_episode >= episodes:
                row_episode[row] = -1
                return
            episode = next_episode
            next_episode += 1
            row_episode[row] = episode
            raw = start_episode(envs[row], spec, seed + episode)
            observations[row] = model_observation(spec, raw)
            if episode == 0 and record_frames:
                frames.append(render_frame(envs[row], raw, spec, 0, 0.0))
            history[row] = ([], [], [])
            remaining[row] = self.target_return or 0.0
            row_prefix[row] = prefixes[episode % len(prefixes)] if prefixes else None
            if row_prefix[row] is not None:
                cache.install_prefix([row], row_prefix[row])
            else:
                cache.reset([row])

        for row in range(num_envs):
            begin(row)
        previous = None
        fresh = np.zeros(num_envs, dtype=bool)
        # the bar counts environment steps; an episode that ends before the step limit takes its rest off the total
        limits = [n for n in (max_steps, getattr(getattr(envs[0], "spec", None), "max_episode_steps", None)) if n]
        limit = min(limits) if limits else None
        bar = tqdm(total=limit and episodes * limit, desc=f"evaluate {self.task}", unit="step", disable=not progress)
        finished = 0
        step_tokens = self.codec.layout.tokens_per_timestep
        window_steps = self.context_length // step_tokens
        while (row_episode >= 0).any():
            active = row_episode >= 0
            if self.memory == "window" and cache.time + step_tokens - (previous is None) > cache.capacity:
                with torch_threads(threads):
                    self._rebuild(cache, history, row_prefix)
                previous, fresh[:] = None, False
            rtg = remaining.copy() if self.target_return is not None else None
            with torch_threads(threads):
                actions, ids = self.act(np.stack(observations), cache, generator, previous, fresh, rtg)
            previous = ids[:, -1:]
            fresh[:] = False
            for row in np.flatnonzero(active):
                episode = row_episode[row]
                if self.memory == "window":  # a window's worth is all a rebuild can use
                    for kept, item in zip(history[row], (observations[row], ids[row].numpy(), remaining[row])):
                        kept.append(item)
                        del kept[:-window_steps]
                raw, reward, terminated, truncated, _ = envs[row].step(actions[row])
                returns[episode] += float(reward)
                remaining[row] -= float(reward)
                lengths[episode] += 1
                env_steps += 1
                observations[row] = model_observation(spec, raw)
                if episode == 0 and len(frames) < record_frames:
                    frames.append(render_frame(envs[row], raw, spec, int(lengths[episode]), returns[episode]))
                if terminated or truncated or (max_steps is not None and lengths[episode] >= max_steps):
                    finished += 1
                    if limit:
                        bar.total -= limit - int(lengths[episode])
                    bar.set_postfix_str(f"{finished}/{episodes} episodes", refresh=False)
                    begin(row)
                    fresh[row] = True
            bar.update(int(active.sum()))
        bar.close()
        for env in envs:
            env.close()
        return Rollout(self.task, returns, lengths, time.perf_counter() - start, env_steps, frames)
