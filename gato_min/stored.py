"""Stored training runs, for readers who have the package but not the repository.

Chapters 06 to 08 read finished runs (config, metrics, weights, evaluation reports) from the
repository's `results/` folder. A reader who installed the package with pip (Colab, for one)
has no such folder, and the runs (~16 MB, mostly weights) are too big to ship in the wheel.
So the wheel ships only a manifest, `assets/stored_runs.json`: every file of every stored run,
with its size and sha256. `stored_run(name)` finds a run's folder, in this order:

1. `$GATO_MIN_RESULTS/<name>`, when that variable names a local copy of `results/`;
2. `results/<name>` of the source checkout this package was imported from;
3. the download cache `<cache>/results/<name>` ($GATO_MIN_CACHE, else ~/.cache/gato_min),
   fetching from `$GATO_MIN_RESULTS_URL` (default `STORED_RUNS_URL`) whatever file is missing
   or stale, and checking each against the manifest before it is put in place.

After changing anything under `results/`, regenerate the manifest: `python -m gato_min.stored`.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from gato_min.files import atomic_write_bytes, atomic_write_text

STORED_RUNS_URL = "https://raw.githubusercontent.com/gato-min/gato_min/main/results"
MANIFEST = Path(__file__).resolve().parent / "assets" / "stored_runs.json"
SOURCE_RESULTS = Path(__file__).resolve().parents[1] / "results"  # exists only in a checkout
SKIPPED = {"checkpoint.pt"}  # resumable training state: large, and no chapter needs it
TIMEOUT_S = 60


def _digest(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def build_manifest(results_dir: str | Path) -> dict:
    """{run: {relative POSIX path: {"sha256", "size"}}} for every run folder in `results_dir`."""
    results_dir = Path(results_dir)
    manifest = {}
    for run in sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = {}
        for path in sorted(p for p in run.rglob("*") if p.is_file()):
            relative = path.relative_to(run)
            if path.name in SKIPPED or any(part.startswith(".") for part in relative.parts):
                continue
            entries[relative.as_posix()] = _digest(path.read_bytes())
        manifest[run.name] = entries
    return manifest


def write_manifest(results_dir: str | Path, path: str | Path = MANIFEST) -> Path:
    text = json.dumps(build_manifest(results_dir), indent=1, sort_keys=True) + "\n"
    return atomic_write_text(path, text)


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def cache_root() -> Path:
    """Same rule as the dataset cache: $GATO_MIN_CACHE, else ~/.cache/gato_min."""
    return Path(os.environ.get("GATO_MIN_CACHE") or "~/.cache/gato_min").expanduser()


def results_url() -> str:
    return (os.environ.get("GATO_MIN_RESULTS_URL") or STORED_RUNS_URL).rstrip("/")


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(
            f"Could not download a stored run file from {url} ({err}).\n"
            "Two ways out: clone the repository (git clone https://github.com/gato-min/gato_min) "
            "and run the chapter from its chapters/ folder, or set GATO_MIN_RESULTS to a local "
            "copy of the repository's results/ folder."
        ) from err


def _is_current(path: Path, expected: dict) -> bool:
    if not path.is_file() or path.stat().st_size != expected["size"]:
        return False
    return _digest(path.read_bytes()) == expected


def _fetch_into(folder: Path, name: str, file: str, expected: dict) -> None:
    url = f"{results_url()}/{urllib.parse.quote(f'{name}/{file}')}"
    data = _download(url)
    got = _digest(data)
    if got != expected:
        (folder / file).unlink(missing_ok=True)  # never leave a stale or wrong copy in place
        raise ValueError(
            f"Stored run file {name}/{file} from {url} failed its check: expected "
            f"sha256 {expected['sha256']} ({expected['size']} bytes), got sha256 "
            f"{got['sha256']} ({got['size']} bytes)."
        )
    atomic_write_bytes(folder / file, data)


def _local_run(root: Path, name: str, files: list[str] | None, origin: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(f"Stored run {name!r} is not in {root} ({origin}).")
    missing = [f for f in files or [] if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"Stored run {name!r} in {root} ({origin}) lacks {missing}.")
    return folder


def stored_run(name: str, files: list[str] | None = None) -> Path:
    """The folder of stored run `name`, holding at least `files` (default: all of them)."""
    local = os.environ.get("GATO_MIN_RESULTS")
    if local:
        return _local_run(Path(local).expanduser(), name, files, "from $GATO_MIN_RESULTS")
    if (SOURCE_RESULTS / name).is_dir():
        return SOURCE_RESULTS / name

    manifest = load_manifest()
    if name not in manifest:
        raise KeyError(f"No stored run {name!r}; the stored runs are {sorted(manifest)}.")
    entries = manifest[name]
    wanted = list(entries) if files is None else list(files)
    unknown = [f for f in wanted if f not in entries]
    if unknown:
        raise KeyError(f"Stored run {name!r} has no {unknown}; its files are {sorted(entries)}.")

    folder = cache_root() / "results" / name
    folder.mkdir(parents=True, exist_ok=True)
    stale = [f for f in wanted if not _is_current(folder / f, entries[f])]
    if stale:
        for file in tqdm(stale, desc=f"downloading {name}", unit="file", disable=len(stale) <= 1):
            _fetch_into(folder, name, file, entries[file])
    return folder


if __name__ == "__main__":
    if not SOURCE_RESULTS.is_dir():
        raise SystemExit(f"No results/ folder at {SOURCE_RESULTS}: run this from a source checkout.")
    written = write_manifest(SOURCE_RESULTS, MANIFEST)
    runs = load_manifest()
    count = sum(len(entries) for entries in runs.values())
    print(f"wrote {written}: {len(runs)} runs, {count} files")
