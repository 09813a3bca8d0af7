"""bench/RESULTS.md: one section per benchmark script, each rewritten whole by its own script."""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nWritten by the scripts in bench/; each section says how to reproduce it.\n"


def machine() -> str:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(f"{name} {version(name)}" for name in ("tensorflow", "ai-edge-litert", "mlflow"))
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {packages}"


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
