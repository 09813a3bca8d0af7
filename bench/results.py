"""bench/RESULTS.md: one section per benchmark script, each rewritten whole by its own script."""

from __future__ import annotations

import os
import platform
import re
import statistics
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nWritten by the scripts in bench/; each section says how to reproduce it.\n"


def cpu() -> str:
    """The processor and its core count: machines of one kind here differ in it (an Intel Xeon on one day, an
    AMD EPYC on another), and a model's speed, int8's against float32's above all, differs with it."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def machine() -> str:
    """What the numbers were measured on."""
    packages = ", ".join(f"{name} {version(name)}" for name in ("tensorflow", "ai-edge-litert", "mlflow"))
    return f"{cpu()}, Python {platform.python_version()}, {packages}"


def spread(values: list[float], digits: int = 2) -> str:
    """A repeated measurement as its median and range: `1,234.5 (1,200.0–1,250.1)`."""
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or add) the section `name` of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n"
        f"Measured {stamp} on: {machine()}\n\nReproduce: `{command}`\n\n{body.strip()}\n<!-- {name}:end -->\n"
    )
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}"
    RESULTS.write_text(text)


README = RESULTS.parent.parent / "README.md"


def write_readme_block(name: str, body: str) -> None:
    """Replace the README's block `name` (between `<!-- bench:name -->` and `<!-- /bench:name -->`) with body.

    Every measured figure in README lives in such a block, written by the script that measured it
    (tests/test_readme.py checks that each block has its writer and that no figure stands outside one). The block
    ends with the processor it was measured on, since blocks written on different machines stand side by side."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    body = f"{body.strip()}\n\n(Measured on {cpu()}.)"
    text = README.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no block {start} ... {end}; add one where these figures belong")
    pattern = re.compile(rf"{re.escape(start)}\n.*?{re.escape(end)}", re.DOTALL)
    README.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text))
