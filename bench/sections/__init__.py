"""One renderer per benchmark: `render(results) -> str`, its markdown section of
docs/benchmarks.md from its results file alone. Pure and light (no measuring imports), so the
unit suite checks the document against the files."""
