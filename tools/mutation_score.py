"""Print the mutation score of `make mutation`, per module, from mutmut's result files.

mutmut (3.x) writes `mutants/<module>.py.meta`, a JSON object whose `exit_code_by_key` gives,
for every mutant, the exit code of the tests run against it: 1 or 3 means the tests failed
(the mutant is killed), 0 that they passed (it survived). The score is killed / (killed +
survived + timeouts); mutants no test reaches count as survivors. Survivors are listed so that
each can be killed by a test or explained as equivalent.

    python tools/mutation_score.py [mutants folder] [--json out.json]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED, SURVIVED = {1, 3}, {0, 5, 33}


def scores(root: Path) -> dict:
    table = {}
    for meta in sorted(root.glob("gato_min/**/*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if not codes:
            continue
        module = meta.relative_to(root).as_posix().removesuffix(".py.meta")
        counts = Counter("killed" if c in KILLED else "survived" if c in SURVIVED else "other" for c in codes.values())
        checked = counts["killed"] + counts["survived"]
        table[module] = {
            "mutants": len(codes),
            "killed": counts["killed"],
            "survived": counts["survived"],
            "not checked or timed out": counts["other"],
            "score": round(counts["killed"] / checked, 4) if checked else None,
            "survivors": sorted(key for key, code in codes.items() if code in SURVIVED),
        }
    return table


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv and not argv[0].startswith("--") else Path("mutants")
    table = scores(root)
    if not table:
        print(f"no mutmut results under {root}/ (run make mutation first)", file=sys.stderr)
        return 1
    total_killed = sum(row["killed"] for row in table.values())
    total_checked = total_killed + sum(row["survived"] for row in table.values())
    print(f"{'module':<22}{'mutants':>9}{'killed':>8}{'survived':>10}{'score':>8}")
    for module, row in table.items():
        print(f"{module:<22}{row['mutants']:>9}{row['killed']:>8}{row['survived']:>10}{row['score']:>8.1%}")
    score = total_killed / total_checked
    print(f"{'all':<22}{total_checked:>9}{total_killed:>8}{total_checked - total_killed:>10}{score:>8.1%}")
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
