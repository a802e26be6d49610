"""Print the pip: section of environment.yml as a requirements list (standard library only).

The Makefile runs this with the system python3 before any virtual environment exists, so that
environment.yml stays the one source of the pins: `python3 tools/pins.py environment.yml`.
"""

import sys
from pathlib import Path


def pip_requirements(path: Path) -> list[str]:
    """The entries of the `- pip:` list under `dependencies:`, in order."""
    lines = path.read_text().splitlines()
    requirements, pip_indent = [], None
    for number, line in enumerate(lines, 1):
        stripped = line.split(" #", 1)[0].rstrip()  # drop trailing comments
        if not stripped.strip() or stripped.lstrip().startswith("#"):
            continue
        indent = len(stripped) - len(stripped.lstrip())
        if pip_indent is None:
            if stripped.strip() == "- pip:":
                pip_indent = indent
            continue
        if indent <= pip_indent:
            break
        item = stripped.strip()
        if not item.startswith("- "):
            raise SystemExit(f"{path}:{number}: expected '- <requirement>' in the pip: section, got {item!r}")
        requirements.append(item[2:].strip())
    if not requirements:
        raise SystemExit(f"{path}: no '- pip:' section with requirements found")
    return requirements


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "environment.yml")
    print("\n".join(pip_requirements(target)))
