"""Checks that keep the repository's derived files current and its two READMEs in step."""

import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

import gato_min

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from pins import pip_requirements  # noqa: E402

CHAPTER_SOURCES = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))


def test_there_are_chapters():
    assert [p.stem for p in CHAPTER_SOURCES][:2] == ["00_overview", "01_tokenization"]


# ---------------------------------------------------------------- chapters


@pytest.mark.parametrize("source", CHAPTER_SOURCES, ids=lambda p: p.stem)
def test_chapter_pair_inputs_agree_and_every_code_cell_ran(source):
    import jupytext
    import nbformat

    notebook_path = source.with_suffix(".ipynb")
    assert notebook_path.exists(), f"{source.name} has no executed {notebook_path.name}: run make chapters"
    from_py = [(c.cell_type, c.source.strip()) for c in jupytext.read(source).cells]
    notebook = nbformat.read(notebook_path, as_version=4)
    from_ipynb = [(c.cell_type, c.source.strip()) for c in notebook.cells]
    assert from_py == from_ipynb, f"{source.name} and {notebook_path.name} differ: run make chapters"
    unrun = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.get("execution_count") is None]
    assert not unrun, f"{notebook_path.name}: code cells {unrun} were never executed"
    counts = [c.execution_count for c in notebook.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{notebook_path.name} was not executed top to bottom once"
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{notebook_path.name} holds error outputs"


def test_notebooks_are_clean():
    notebooks = [str(p.with_suffix(".ipynb")) for p in CHAPTER_SOURCES]
    result = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", "--verify", *notebooks],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"run nbstripout --keep-output --keep-count on chapters/*.ipynb:\n{result.stdout}"


def test_chapters_colab_cells_and_badges_use_the_repository_address():
    address = gato_min.REPOSITORY.removeprefix("https://github.com/")
    for source in CHAPTER_SOURCES:
        text = source.read_text()
        assert f"colab.research.google.com/github/{address}/blob/main/chapters/{source.stem}.ipynb" in text, source.name
        assert f'"gato_min @ git+{gato_min.REPOSITORY}"' in text, f"{source.name}: Colab install cell"
        assert '"google.colab" in sys.modules' in text, f"{source.name}: Colab install cell must be guarded"


# ---------------------------------------------------------------- pins


def test_installed_versions_equal_the_pins():
    from packaging.requirements import Requirement

    mismatched = []
    for line in pip_requirements(ROOT / "environment.yml"):
        if line.startswith("-e"):
            continue
        requirement = Requirement(line)
        assert str(requirement.specifier).startswith("=="), f"environment.yml: {line!r} is not an exact pin"
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            mismatched.append(f"{requirement.name}: not installed, pinned {requirement.specifier}")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            mismatched.append(f"{requirement.name}: installed {installed}, pinned {requirement.specifier}")
    assert not mismatched, (
        "installed versions differ from environment.yml (run make test in a fresh .venv):\n" + "\n".join(mismatched)
    )


def test_environment_yml_is_conda_clean():
    text = (ROOT / "environment.yml").read_text()
    assert "prefix:" not in text and "defaults" not in text
    assert re.search(r"^\s*- python=3\.11\s*$", text, re.M)
    assert not re.search(r"=\S+=\S+", text), "no build strings"
    assert "-e ." in pip_requirements(ROOT / "environment.yml")


def test_pyproject_has_lower_bounds_only():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert not [d for d in deps if "==" in d or "<" in d], "pyproject.toml keeps lower bounds only"


def test_pins_script_reports_a_file_without_pip_section(tmp_path):
    bad = tmp_path / "environment.yml"
    bad.write_text("name: x\ndependencies:\n  - python=3.11\n")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "pins.py"), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "no '- pip:' section" in result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in re.findall(r"^(make \w+)", readme, re.M)
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci_commands == ["make test"]


# ---------------------------------------------------------------- READMEs


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _structure(text: str):
    code_blocks = re.findall(r"```.*?```", text, flags=re.S)
    headings = [len(m) for m in re.findall(r"^(#+) ", re.sub(r"```.*?```", "", text, flags=re.S), re.M)]
    return code_blocks, headings


def test_readme_links_resolve():
    for name in ("README.md", "README_zh.md"):
        for link in _links((ROOT / name).read_text()):
            if link.startswith(("http://", "https://", "#")):
                continue
            assert (ROOT / link).exists(), f"{name} links {link}, which does not exist"


def test_readme_pair_in_step():
    english = (ROOT / "README.md").read_text()
    chinese = (ROOT / "README_zh.md").read_text()
    assert english.splitlines()[0] == "**English** | [中文](README_zh.md)"
    assert chinese.splitlines()[0] == "[English](README.md) | **中文**"
    en_code, en_headings = _structure(english)
    zh_code, zh_headings = _structure(chinese)
    assert en_code == zh_code, "the two READMEs must hold the same code blocks, byte for byte"
    assert en_headings == zh_headings, "the two READMEs must have the same heading structure"
    assert _links(english)[1:] == _links(chinese)[1:], "the two READMEs must link the same targets in order"


def test_readmes_list_every_chapter_with_a_colab_badge():
    address = gato_min.REPOSITORY.removeprefix("https://github.com/")
    for name in ("README.md", "README_zh.md"):
        text = (ROOT / name).read_text()
        for source in CHAPTER_SOURCES:
            assert f"(chapters/{source.stem}.ipynb)" in text, f"{name} does not list {source.stem}"
            assert f"colab.research.google.com/github/{address}/blob/main/chapters/{source.stem}.ipynb" in text


# ---------------------------------------------------------------- shipped files


def test_shipped_text_model_is_what_its_corpus_produces(tmp_path):
    from gato_min.tools.text_model import CORPUS_FILE, model_file, train_text_model

    retrained = train_text_model(CORPUS_FILE, 1024, out_file=tmp_path / "retrained.model")
    assert retrained.read_bytes() == model_file(1024).read_bytes(), "run make text-model"


def test_collect_prose_reads_markdown_cells_and_the_readme(tmp_path):
    from gato_min.tools.text_model import collect_prose

    (tmp_path / "chapters").mkdir()
    (tmp_path / "README.md").write_text("# Title\n\nSome prose with a [link](x.md).\n\n```bash\nmake test\n```\n")
    (tmp_path / "chapters" / "01_x.py").write_text("# %% [markdown]\n# A chapter sentence.\n\n# %%\nprint('code')\n")
    prose = collect_prose(tmp_path)
    assert "Some prose with a link." in prose and "A chapter sentence." in prose
    assert "make test" not in prose and "print" not in prose
    with pytest.raises(FileNotFoundError, match="no README.md or chapters"):
        collect_prose(tmp_path / "empty")


@pytest.mark.parametrize("source", CHAPTER_SOURCES, ids=lambda p: p.stem)
def test_committed_outputs_hold_no_third_party_noise(source):
    """What a reader sees in a chapter holds no MuJoCo deprecation warning (see gato_min.envs)."""
    notebook = json.loads(source.with_suffix(".ipynb").read_text())
    texts = ["".join(output.get("text", "")) for cell in notebook["cells"] for output in cell.get("outputs", [])]
    assert not [text for text in texts if "settotalmass" in text]
