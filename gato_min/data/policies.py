"""The shipped behaviour policies: small torch actors stored as safetensors.

Gato learns by imitating expert agents (Reed et al., 2022, Sec. 3.1). gato_min's MuJoCo experts
are TD3 actors trained by `gato_min.tools.experts`; only the actor is shipped, and this module
turns its file into a plain torch module, so collecting data needs torch alone. A task a user
registers names its own policies instead; `load_user_policy` turns such a name into a callable.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from gato_min.files import atomic_save_safetensors


class MLPPolicy(nn.Module):
    """Deterministic actor: observation -> ReLU MLP -> tanh -> action in [low, high]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes, action_low, action_high):
        super().__init__()
        sizes = [obs_dim, *hidden_sizes, action_dim]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            layers.append(nn.ReLU() if i < len(sizes) - 2 else nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.register_buffer("action_low", torch.as_tensor(action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(action_high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        unit = self.net(obs)
        return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch (or a single) observation given as a numpy array."""
        return self(torch.as_tensor(obs, dtype=torch.float32)).numpy()


def export_policy(policy: MLPPolicy, path: str | Path, **metadata) -> Path:
    """Write `policy` as safetensors; its shape and any `metadata` go in the file's header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    linears = [m for m in policy.net if isinstance(m, nn.Linear)]
    header = {
        "obs_dim": str(linears[0].in_features),
        "action_dim": str(linears[-1].out_features),
        "hidden_sizes": json.dumps([m.out_features for m in linears[:-1]]),
        **{k: str(v) for k, v in metadata.items()},
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in policy.state_dict().items()}
    atomic_save_safetensors(tensors, path, header)
    return path


def load_policy(path: str | Path) -> tuple[MLPPolicy, dict[str, str]]:
    """Load an exported actor; returns the module (in eval mode) and the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"policy file {path} is not a readable safetensors file: {err}") from None
    for key in ("obs_dim", "action_dim", "hidden_sizes"):
        if key not in metadata:
            raise ValueError(f"policy file {path} lacks the header key {key!r}")
    state = load_file(str(path))
    policy = MLPPolicy(
        int(metadata["obs_dim"]),
        int(metadata["action_dim"]),
        json.loads(metadata["hidden_sizes"]),
        state["action_low"],
        state["action_high"],
    )
    policy.load_state_dict(state)
    return policy.eval(), metadata


def load_user_policy(source):
    """A user's policy as a callable observation -> action: `source` is such a callable, a
    "module:function" string, or a Stable-Baselines3 model file (.zip, played deterministically)."""
    if callable(source):
        return source
    if not isinstance(source, str):
        raise TypeError(f"a policy must be a callable, 'module:function' or an SB3 .zip file, got {source!r}")
    if source.endswith(".zip"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"policy file {path} does not exist")
        import stable_baselines3  # an optional extra ([experts]), needed only for SB3 policy files

        with zipfile.ZipFile(
            path
        ) as archive:  # the policy's module names its algorithm: stable_baselines3.<algo>.policies
            module = json.loads(archive.read("data"))["policy_class"]["__module__"].split(".")[1]
        names = {"common": ["PPO", "A2C"]}.get(module, [module.upper()])
        for name in names:
            try:
                model = getattr(stable_baselines3, name).load(str(path), device="cpu")
                break
            except (AttributeError, ValueError, KeyError, RuntimeError):
                continue
        else:
            raise ValueError(f"{path}: not a model of {' or '.join(names)} that Stable-Baselines3 can load")
        return lambda observation: model.predict(observation, deterministic=True)[0]
    module_name, _, function = source.partition(":")
    if not function:
        raise ValueError(f"policy {source!r}: expected an SB3 .zip file or 'module:function'")
    return getattr(importlib.import_module(module_name), function)
