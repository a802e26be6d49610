"""Does the token resolution cost the expert? (a measurement script, not part of the package)

    MUJOCO_GL=egl python results/screen-walker2d-steps-data/expert_through_tokens.py walker2d

The shipped expert plays 20 episodes (seeds 1000-1019) three ways: on the raw observations; on
observations tokenized and decoded again (mu-law, 1024 bins: what the model reads); and with its
torques binned too (1024 uniform bins: what the model can write). Prints the normalized score
(mean +- 95 % CI) and how many episodes returned under 2,000 (a fall).
"""

import sys

import numpy as np

from gato_min.config import GatoConfig
from gato_min.data.collect import policy_file
from gato_min.data.policies import load_policy
from gato_min.data.reference import normalized_score
from gato_min.envs import get_task, make_env, start_episode
from gato_min.tokenize import Tokenizer

task = sys.argv[1] if len(sys.argv) > 1 else "walker2d"
spec = get_task(task)
tokenizer = Tokenizer(GatoConfig.from_preset("cpu-tiny"))
policy, _ = load_policy(policy_file(task, "expert"))
env = make_env(task)

for mode in ("raw", "observations through tokens", "observations and torques through tokens"):
    returns = []
    for episode in range(20):
        obs, total, done = start_episode(env, spec, 1000 + episode), 0.0, False
        while not done:
            if mode != "raw":
                obs = tokenizer.decode_continuous(tokenizer.encode_continuous(np.asarray(obs, np.float64)[None]))
            action = policy.act(np.asarray(obs, np.float32).reshape(1, -1))[0]
            if mode.endswith("torques through tokens"):
                action = tokenizer.decode_actions(tokenizer.encode_actions(np.clip(action, -1, 1)[None])).reshape(-1)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
    score = normalized_score(task, np.array(returns))
    half = 1.96 * score.std(ddof=1) / np.sqrt(len(score))
    print(f"{task} {mode}: {score.mean():.1f} +- {half:.1f}, falls {int((np.array(returns) < 2000).sum())} of 20")
