"""Shared test rules: no test leaks global state into the ones after it."""

import os

import pytest
import torch
from hypothesis import Phase, settings

# `make mutation` runs the property tests with this profile: a failing example is enough to kill
# a mutant, so there is no shrinking (which can outlast mutmut's time limit)
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None)


@pytest.fixture(autouse=True)
def no_leaked_global_state():
    """Fail a test that changes torch's thread count, the working directory or the environment
    and does not give them back (pytest's monkeypatch undoes its own changes before this runs)."""
    threads, cwd, environ = torch.get_num_threads(), os.getcwd(), dict(os.environ)
    yield
    leaked = []
    if torch.get_num_threads() != threads:
        leaked.append(f"torch threads {threads} -> {torch.get_num_threads()}")
        torch.set_num_threads(threads)
    if os.getcwd() != cwd:
        leaked.append(f"working directory {cwd} -> {os.getcwd()}")
        os.chdir(cwd)
    # pytest's own variable; what torch (its compiler cache) and the package itself (MuJoCo's offscreen
    # renderer, gato_min.envs, chosen once per process before MuJoCo loads) set on first use, on purpose
    ignored = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR", "MUJOCO_GL", "PYOPENGL_PLATFORM"}
    keys = (set(environ) | set(os.environ)) - ignored
    changed = sorted(k for k in keys if environ.get(k) != os.environ.get(k))
    if changed:
        leaked.append(f"environment variables {changed}")
        for key in changed:
            os.environ.pop(key, None)
            if key in environ:
                os.environ[key] = environ[key]
    assert not leaked, "the test leaked global state: " + "; ".join(leaked)
