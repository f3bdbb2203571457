"""The repository explains itself: no file points outside it, and every link lands.

The design, the conventions and the baseline figures live in README.md, deploy/README.md,
benchmarks/README.md and docs/. A file that cites a document the repository does not hold,
or a path on one engineer's machine, sends the next reader nowhere; these tests read every
file git tracks (or would track) and refuse both, and follow every relative link of every
markdown file.
"""

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECISIONS = ROOT / "docs" / "decisions"
DECISIONS_INDEX = DECISIONS / "README.md"

# Design notes that were never part of the repository, and paths of one machine. The
# names are spelled so that this file does not match them itself.
OUTSIDE_REFERENCES = re.compile(
    r"\b(?:DESIGN|STYLE|BASELINES)[.]md\b"  # the notes the repository's docs/ replaced
    r"|[.][.]/shared\b"  # a folder beside the checkout
    r"|/wor[k]/"  # the development machines' checkouts
)
# Recorded Temporal histories (replayed by workflows/tests/test_replay.py): each failure in
# them carries the stack trace of the machine that recorded it, absolute paths included.
# That is data, not a reference, and recording them again writes that machine's paths.
RECORDED_DATA = ("workflows/tests/histories/",)

# `[text](target)`, with an optional title, and `[label]: target` definitions.
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.MULTILINE)
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
DECISION_FILE = re.compile(r"(\d{4})-[a-z0-9-]+\.md")

# What the README must point a newcomer at, near the top and in its layout.
README_DOCS = (
    "docs/architecture.md",
    "docs/conventions.md",
    "docs/decisions/",
    "docs/baselines.md",
)


def repository_files() -> list[Path]:
    """Every file git tracks or would track (new, not ignored), as it is on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = sorted({name for name in listed.stdout.decode().split("\0") if name})
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def link_targets(markdown: str) -> list[str]:
    """The targets of the links of a markdown text, outside code."""
    prose = CODE_SPAN.sub("", FENCED_BLOCK.sub("", markdown))
    return INLINE_LINK.findall(prose) + LINK_DEFINITION.findall(prose)


def local_target(source: Path, target: str) -> Path | None:
    """Where a relative link of `source` leads; None for a URL or an anchor of the page."""
    if target.startswith("#") or URL_SCHEME.match(target):
        return None
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    return (source.parent / path).resolve()


def markdown_files() -> list[Path]:
    return [path for path in repository_files() if path.suffix == ".md"]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_file_listing_sees_the_repository() -> None:
    """Guards the tests below against passing on an empty listing."""
    names = {relative(path) for path in repository_files()}
    assert {"README.md", "pyproject.toml", "workflows/transfer.py"} <= names


def test_no_file_refers_to_anything_outside_the_repository() -> None:
    found = []
    for path in repository_files():
        name = relative(path)
        if name.startswith(RECORDED_DATA):
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in OUTSIDE_REFERENCES.finditer(line):
                found.append(f"{name}:{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    assert not found, "files refer to something outside the repository:\n" + "\n".join(found)


def test_every_markdown_file_a_file_names_exists() -> None:
    """A path like `docs/decisions/0003-journal-integrity.md` in a comment, a docstring or
    a document names a file of this repository: it must be there."""
    top_level = {relative(path).split("/", 1)[0] for path in repository_files()}
    named_path = re.compile(
        r"(?<![\w/.-])(?:" + "|".join(map(re.escape, sorted(top_level))) + r")/[\w./-]*?\.md\b"
    )
    missing = []
    for path in repository_files():
        name = relative(path)
        text = None if name.startswith(RECORDED_DATA) else text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in named_path.finditer(line):
                if not (ROOT / match.group(0)).is_file():
                    missing.append(f"{name}:{number}: {match.group(0)}")
    assert not missing, "files name markdown files that do not exist:\n" + "\n".join(missing)


def test_every_relative_markdown_link_lands_in_the_repository() -> None:
    broken = []
    for source in markdown_files():
        for target in link_targets(source.read_text(encoding="utf-8")):
            destination = local_target(source, target)
            if destination is None:
                continue
            if not destination.is_relative_to(ROOT):
                broken.append(f"{relative(source)}: {target} leaves the repository")
            elif not destination.exists():
                broken.append(f"{relative(source)}: {target} does not exist")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_the_docs() -> None:
    readme = ROOT / "README.md"
    linked = {
        relative(destination) + ("/" if destination.is_dir() else "")
        for target in link_targets(readme.read_text(encoding="utf-8"))
        if (destination := local_target(readme, target)) is not None
        and destination.is_relative_to(ROOT)
    }
    missing = [name for name in README_DOCS if name not in linked]
    assert not missing, f"README.md does not link {missing}"


def decision_records() -> list[Path]:
    return sorted(path for path in DECISIONS.glob("*.md") if DECISION_FILE.fullmatch(path.name))


def test_decision_records_are_numbered_once_and_indexed() -> None:
    records = decision_records()
    assert records, "docs/decisions/ holds no record"
    numbers = [path.name[:4] for path in records]
    assert len(numbers) == len(set(numbers)), f"a number used twice: {numbers}"
    assert DECISIONS_INDEX.is_file(), "docs/decisions/README.md lists the records"
    indexed = {
        local_target(DECISIONS_INDEX, target)
        for target in link_targets(DECISIONS_INDEX.read_text(encoding="utf-8"))
    }
    unlisted = [path.name for path in records if path not in indexed]
    assert not unlisted, f"docs/decisions/README.md does not link {unlisted}"


@pytest.mark.parametrize("record", decision_records(), ids=lambda path: path.name[:4])
def test_a_decision_record_is_titled_with_its_number(record: Path) -> None:
    title = record.read_text(encoding="utf-8").splitlines()[0]
    assert title.startswith(f"# {record.name[:4]} "), f"{record.name} opens with {title!r}"
