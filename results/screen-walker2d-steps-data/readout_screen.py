"""Readouts screened on a trained Walker2d run (a measurement script, not part of the package).

    MUJOCO_GL=egl python results/screen-walker2d-steps-data/readout_screen.py RUN mean sharp:0.5 window:16

Each spec replaces how `GatoAgent` reads a torque from its distribution over the 1024 bins:
`mean` (the package's `readout="mean"`), `sharp:T` (the mean of the softmax at temperature T < 1:
between the mean and the most likely bin), `window:W` (the mean of the bins within W of the most
likely one, renormalized). 30 episodes, seeds 1000-1029, no prompt; reports go to RUN/readout-SPEC.
"""

import sys

import torch

from gato_min import agent
from gato_min.evaluate import evaluate_run

package_sample = agent.GatoAgent.sample
spec = {"kind": "mean", "value": 0.0}


def sample(self, logits, generator):
    if spec["kind"] == "mean":
        return package_sample(self, logits, generator)
    low, high = self.codec.action_ids
    legal = logits[:, low:high].float()
    bins = torch.arange(high - low, dtype=torch.float32)
    if spec["kind"] == "sharp":
        probs = torch.softmax(legal / spec["value"], dim=1)
    else:
        probs = torch.softmax(legal, dim=1)
        probs = probs * ((bins[None] - probs.argmax(dim=1, keepdim=True)).abs() <= spec["value"])
        probs = probs / probs.sum(dim=1, keepdim=True)
    return (probs @ bins).round().long() + low


agent.GatoAgent.sample = sample
run = sys.argv[1]
for text in sys.argv[2:]:
    kind, _, value = text.partition(":")
    spec.update(kind=kind, value=float(value or 0))
    report = evaluate_run(
        run, ["walker2d"], episodes=30, num_envs=10, seed=1000, prompt_tokens=0, readout="mean",
        out=f"{run}/readout-{kind}{value}", gif_steps=0, progress=False, overwrite=True,
    )  # fmt: skip
    row = report["tasks"][0]
    print(f"{run} {text}: {row['score_mean']:.1f} +- {row['score_ci95']:.1f}", flush=True)
