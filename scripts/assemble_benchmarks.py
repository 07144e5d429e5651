"""Write BENCHMARKS.md: the headline figures, then each benchmark page of docs/bench-*.md."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = [
    "bench-demo.md",
    "bench-instruments.md",
    "bench-hil-sim-protocols.md",
    "bench-hil-sim-physics.md",
    "bench-market.md",
    "bench-telemetry.md",
    "bench-runstore.md",
    "bench-agents.md",
]


def main() -> None:
    parts = [(REPO / "docs" / "benchmarks-headline.md").read_text(encoding="utf-8").rstrip()]
    for name in ORDER:
        path = REPO / "docs" / name
        if path.exists():
            text = path.read_text(encoding="utf-8").strip()
            # each page's title becomes a second-level heading
            lines = text.splitlines()
            if lines and lines[0].startswith("# "):
                lines[0] = "#" + lines[0]
            parts.append("\n".join(lines))
    (REPO / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
