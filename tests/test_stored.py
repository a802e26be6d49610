"""Stored runs: the manifest is current, and a pip-installed copy fetches, checks and caches files.

No network: every "download" reads a `file://` URL pointing at a local folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from gato_min import stored

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
RUN = "halfcheetah-30min"
SMALL = ["config.json", "summary.json"]


@pytest.fixture
def no_checkout(monkeypatch, tmp_path):
    """Act like an installed package: no results/ beside it, an empty cache, no local results."""
    monkeypatch.setattr(stored, "SOURCE_RESULTS", tmp_path / "no-checkout" / "results")
    monkeypatch.setenv("GATO_MIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GATO_MIN_RESULTS", raising=False)
    monkeypatch.setenv("GATO_MIN_RESULTS_URL", RESULTS.as_uri())
    return tmp_path / "cache" / "results"


def test_manifest_is_current():
    committed = json.loads((REPO / "gato_min" / "assets" / "stored_runs.json").read_text())
    assert committed == stored.build_manifest(RESULTS), "results/ changed: run python -m gato_min.stored"


def test_manifest_text_is_what_write_manifest_writes(tmp_path):
    written = stored.write_manifest(RESULTS, tmp_path / "manifest.json")
    assert written.read_text() == stored.MANIFEST.read_text()


def test_installed_copy_downloads_into_the_cache(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(REPO / "gato_min", site / "gato_min", ignore=shutil.ignore_patterns("__pycache__"))
    assert not (site / "results").exists()
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GATO_MIN_RESULTS"}
    env.update(PYTHONPATH=str(site), GATO_MIN_CACHE=str(cache), GATO_MIN_RESULTS_URL=RESULTS.as_uri())
    script = (
        "import json, gato_min; from gato_min.stored import stored_run; "
        f"print(json.dumps([gato_min.__file__, str(stored_run({RUN!r}, {SMALL!r}))]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    package_file, folder = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(package_file).resolve() == (site / "gato_min" / "__init__.py").resolve()
    folder = Path(folder)
    assert folder == cache / "results" / RUN
    assert sorted(p.name for p in folder.iterdir()) == sorted(SMALL)
    for name in SMALL:
        assert (folder / name).read_bytes() == (RESULTS / RUN / name).read_bytes()


def test_runs_named_in_chapters_are_stored():
    pattern = re.compile(r"""stored_run\(\s*(["'])([^"']+)\1""")
    named = {m.group(2) for path in (REPO / "chapters").glob("*.py") for m in pattern.finditer(path.read_text())}
    if not named:  # the chapters do not call stored_run yet
        named = {p.name for p in RESULTS.iterdir() if p.is_dir()}
    assert named and named <= set(stored.load_manifest())


def test_chapters_stored_runs_load_from_an_installed_copy(tmp_path):
    """What chapters 06-09 read, read from a copy of the package with no repository beside it:
    every stored run they name is fetched whole and opens as a run (config, data, settings,
    metrics, weights, evaluation reports); a stored table (bench-learn's) arrives with its files."""
    pattern = re.compile(r"""stored_run\(\s*(["'])([^"']+)\1""")
    named = sorted(
        {m.group(2) for path in (REPO / "chapters").glob("*.py") for m in pattern.finditer(path.read_text())}
    )
    assert {"halfcheetah-cpu-small", "halfcheetah-30min"} <= set(named)
    site = tmp_path / "site"
    shutil.copytree(REPO / "gato_min", site / "gato_min", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GATO_MIN_RESULTS"}
    env.update(PYTHONPATH=str(site), GATO_MIN_CACHE=str(tmp_path / "cache"), GATO_MIN_RESULTS_URL=RESULTS.as_uri())
    script = f"""
import json, gato_min
from gato_min.runs import RunFolder, load_model, read_config, read_data_settings, read_settings
from gato_min.stored import stored_run
out = {{"package": gato_min.__file__}}
for name in {named!r}:
    run = stored_run(name)
    if not (run / "config.json").exists():  # a stored table, not a run
        out[name] = [str(run), sorted(p.name for p in run.iterdir())]
        continue
    data = read_data_settings(run)
    model = load_model(run, task=data.tasks[0])
    reports = sorted(p.parent.name for p in run.glob("eval*/report.json"))
    out[name] = [str(run), read_config(run).context_length, read_settings(run).steps, len(RunFolder(run).rows()),
                 model.num_parameters(), reports]
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).resolve() == (site / "gato_min" / "__init__.py").resolve()
    for name in named:
        if not (RESULTS / name / "config.json").exists():
            folder, files = out[name]
            assert Path(folder) == tmp_path / "cache" / "results" / name
            assert files == sorted(p.name for p in (RESULTS / name).iterdir())
            continue
        folder, context, steps, rows, parameters, reports = out[name]
        assert Path(folder) == tmp_path / "cache" / "results" / name
        assert context == json.loads((RESULTS / name / "config.json").read_text())["context_length"]
        assert rows == len((RESULTS / name / "metrics.jsonl").read_text().splitlines()) and steps > 0
        stored_weights = load_file(RESULTS / name / "model.safetensors")
        assert parameters == sum(t.numel() for t in stored_weights.values())  # every stored tensor loaded, none made up
        assert all(r.startswith("eval") for r in reports)
        assert reports or name.startswith("screen-"), name  # a screen compares training curves; it is not played


def test_fetches_once_then_uses_the_cache(no_checkout, monkeypatch):
    folder = stored.stored_run(RUN, SMALL)
    assert folder == no_checkout / RUN
    monkeypatch.setenv("GATO_MIN_RESULTS_URL", "file:///nonexistent/dir")
    assert stored.stored_run(RUN, SMALL) == folder  # all current: nothing fetched


def test_stale_cached_file_is_fetched_again(no_checkout):
    stale = no_checkout / RUN / "config.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    stored.stored_run(RUN, ["config.json"])
    assert stale.read_bytes() == (RESULTS / RUN / "config.json").read_bytes()


def test_corrupted_download_is_refused(no_checkout, monkeypatch, tmp_path):
    remote = tmp_path / "remote"
    for name in SMALL:
        (remote / RUN).mkdir(parents=True, exist_ok=True)
        shutil.copy(RESULTS / RUN / name, remote / RUN / name)
    (remote / RUN / "summary.json").write_bytes(b"tampered" + (RESULTS / RUN / "summary.json").read_bytes())
    monkeypatch.setenv("GATO_MIN_RESULTS_URL", remote.as_uri())
    with pytest.raises(ValueError, match=r"summary\.json.*expected.*got"):
        stored.stored_run(RUN, ["summary.json"])
    assert not [p for p in (no_checkout / RUN).rglob("*") if p.is_file()]


def test_unreachable_url_explains_the_ways_out(no_checkout, monkeypatch):
    monkeypatch.setenv("GATO_MIN_RESULTS_URL", "file:///nonexistent/dir")
    with pytest.raises((ConnectionError, RuntimeError), match="GATO_MIN_RESULTS") as error:
        stored.stored_run(RUN, SMALL)
    assert "file:///nonexistent/dir/" in str(error.value) and "clone" in str(error.value)


def test_local_results_folder_is_used_as_is(monkeypatch, tmp_path):
    (tmp_path / "mine" / "my-run").mkdir(parents=True)
    monkeypatch.setenv("GATO_MIN_RESULTS", str(tmp_path / "mine"))
    assert stored.stored_run("my-run") == tmp_path / "mine" / "my-run"
    with pytest.raises(FileNotFoundError, match="GATO_MIN_RESULTS"):
        stored.stored_run(RUN)


def test_unknown_run_lists_the_known_ones(no_checkout):
    with pytest.raises(KeyError, match=RUN):
        stored.stored_run("no-such-run")
    with pytest.raises(KeyError, match="config.json"):
        stored.stored_run(RUN, ["no-such-file.txt"])
