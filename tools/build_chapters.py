"""Re-execute and clean every chapter (or the ones named), regenerating the figures in media/.

    python tools/build_chapters.py                 # all chapters
    python tools/build_chapters.py 01_tokenization # one chapter

For each chapters/NN_name.py (the jupytext source): convert it to a notebook, execute it in the
chapters/ folder with this Python's kernel, write NN_name.ipynb atomically, and clean it with
`nbstripout --keep-output --keep-count`. Prints each chapter's wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def build(source: Path, timeout: int = 900) -> float:
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    start = time.perf_counter()
    ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(CHAPTERS)}}
    )
    seconds = time.perf_counter() - start
    target = source.with_suffix(".ipynb")
    tmp = target.with_name(target.name + ".tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, target)
    subprocess.run([sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", str(target)], check=True)
    return seconds


def main(names: list[str]) -> int:
    sources = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))
    if names:
        wanted = {n.removesuffix(".py").removesuffix(".ipynb") for n in names}
        unknown = wanted - {s.stem for s in sources}
        if unknown:
            raise SystemExit(f"no such chapter(s): {sorted(unknown)}; chapters: {[s.stem for s in sources]}")
        sources = [s for s in sources if s.stem in wanted]
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for source in sources:
        print(f"{source.stem}: executing ...", flush=True)
        print(f"{source.stem}: {build(source):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
