"""README's figures are measured, never typed in: each sits in a block that a bench/ script rewrites when it
measures again (`<!-- bench:name -->` ... `<!-- /bench:name -->`, bench/results.py `write_readme_block`), or in
a paragraph that names the test asserting it."""

from __future__ import annotations

import re

from tests.support.commands import PROJECT

BLOCK = re.compile(r"<!-- bench:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->", re.DOTALL)
# A figure someone measured: a time, a rate, a size, a ratio, an accuracy with decimals or its interval
MEASURED = re.compile(
    r"\d[\d,]*(\.\d+)?\s?(ms|µs|req/s|requests/s|MB|GB|KB|kB|B|x|s|min|minutes|seconds)\b|\d+\.\d+%|\[\d+\.\d+"
)
NAMES_ITS_TEST = re.compile(r"tests/(?:\w+/)?test_\w+\.py")
# Numbers with a unit that were not measured here: specifications, and figures others published (each looked at)
NOT_MEASURED_HERE = ("32 KB window", "0.114 B", "| 5 s, and at start", "TFMOT's 10x", "Deep Compression's 35x")


def readme() -> str:
    return (PROJECT / "README.md").read_text()


def bench_sources() -> str:
    return "\n".join(path.read_text() for path in sorted((PROJECT / "bench").glob("*.py")))


def test_every_block_is_closed_and_written_by_a_bench_script():
    text, sources = readme(), bench_sources()
    opened = re.findall(r"<!-- bench:([\w-]+) -->", text)
    closed = [match["name"] for match in BLOCK.finditer(text)]
    assert opened == closed and len(set(opened)) == len(opened), "every block opens once and closes"
    for name in opened:
        assert f'"{name}"' in sources, f"no bench/ script writes README block {name!r}"


def paragraphs_outside_blocks(text: str) -> list[str]:
    """Prose and tables outside the blocks; code fences and parameter tables (defaults, not measurements) left out."""
    prose, fenced, parameters = [], False, False
    for line in BLOCK.sub("", text).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        parameters = line.startswith("| parameter |") or (parameters and line.startswith("|"))
        prose.append("" if fenced or parameters or line.startswith("```") else line)
    return [paragraph for paragraph in "\n".join(prose).split("\n\n") if paragraph.strip()]


def test_no_figure_stands_outside_a_block_unless_its_paragraph_names_the_test_that_asserts_it():
    text = readme()
    for phrase in NOT_MEASURED_HERE:
        assert phrase in text, f"{phrase!r} is no longer in README: drop it from NOT_MEASURED_HERE"
        text = text.replace(phrase, "")
    loose = [
        paragraph
        for paragraph in paragraphs_outside_blocks(text)
        if MEASURED.search(paragraph) and not NAMES_ITS_TEST.search(paragraph)
    ]
    assert not loose, "figures with no bench block and no test:\n\n" + "\n\n".join(loose)


def test_the_checks_see_a_typed_in_figure():
    """The rule above can fail: a figure pasted into prose is found, the same figure inside a block is not."""
    typed = "Serving is fast.\n\nIt answers 3,109 req/s at concurrency 16.\n"
    assert len([p for p in paragraphs_outside_blocks(typed) if MEASURED.search(p)]) == 1
    blocked = "<!-- bench:serving -->\nIt answers 3,109 req/s.\n<!-- /bench:serving -->\n"
    assert not [p for p in paragraphs_outside_blocks(blocked) if MEASURED.search(p)]


def test_every_file_readme_names_exists():
    """A path README cites (a test that asserts a figure, a module, a script) is there to open."""
    cited = set(re.findall(r"`((?:steps|tests|bench|scripts|docs)/[\w/.-]+\.(?:py|sh|md))`", readme()))
    assert cited and [path for path in sorted(cited) if not (PROJECT / path).exists()] == []
