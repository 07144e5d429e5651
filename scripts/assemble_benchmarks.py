"""Write BENCHMARKS.md: the headline figures, then each benchmark page of docs/bench-*.md."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = [
    "bench-demo.md",
    "bench-instruments.md",
    "bench-hil-sim-protocols.md",
    "bench-hil-sim-physics.md",
    "bench-site.md",
    "bench-market.md",
    "bench-market-methods.md",
    "bench-telemetry.md",
    "bench-runstore.md",
    "bench-agents.md",
    "bench-value.md",
    "bench-ledger.md",
    "bench-soak.md",
    "bench-platform.md",
]


def _heading_level(line: str) -> int:
    hashes = len(line) - len(line.lstrip("#"))
    return hashes if hashes and line[hashes : hashes + 1] == " " else 0


def _demoted(text: str) -> str:
    """The page with its headings shifted so that its top heading is a second-level one
    (headings inside code blocks are left alone)."""
    lines = text.splitlines()
    in_code = False
    levels = []
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and _heading_level(line):
            levels.append(_heading_level(line))
    shift = 2 - min(levels) if levels else 0
    in_code = False
    out = []
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and _heading_level(line) and shift > 0:
            line = "#" * shift + line
        out.append(line)
    return "\n".join(out)


def main() -> None:
    parts = [(REPO / "docs" / "benchmarks-headline.md").read_text(encoding="utf-8").rstrip()]
    for name in ORDER:
        path = REPO / "docs" / name
        if path.exists():
            parts.append(_demoted(path.read_text(encoding="utf-8").strip()))
    (REPO / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
