"""Command line: `python -m gato_min <command> ...`; see `python -m gato_min --help`."""

from gato_min.tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
