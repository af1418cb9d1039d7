"""The repository explains itself: it names nothing outside itself, and its Markdown links lead somewhere.

Every tracked file (`git ls-files`) is searched for a path that leads out of the repository: the brief the
system was first built from and the notes beside the checkout are not part of it, so a reader of a clone
would follow a dead reference (docs/architecture.md is the description of the system). Every relative link of
the Markdown pages (README.md, docs/*.md, any other tracked page) must name a tracked file or folder inside
the repository; an anchor after `#` is not checked, and links to other sites are not followed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import PurePosixPath
from urllib.parse import unquote

from tests.support.deploy import ROOT

# Written in two parts so that this file, which is tracked too, does not name them itself.
OUTSIDE = ("../" + "shared", "DESIGN" + ".md", "/work" + "/shared")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def tracked() -> list[str]:
    """The repository's files, as git knows them (paths relative to its root, `/`-separated)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def text_of(name: str) -> str | None:
    """The file's text, or None for a binary file (a screenshot) or one absent from the work tree."""
    path = ROOT / name
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def relative_links(markdown: str) -> list[str]:
    """The link targets of a Markdown page that point into the repository: inline links, images and
    reference definitions, outside code blocks and code spans, without other sites, mail and bare anchors."""
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = INLINE_LINK.findall(prose) + REFERENCE.findall(prose)
    return [t for t in targets if t and not t.startswith("#") and not SCHEME.match(t)]


def resolves(page: str, target: str, files: set[str]) -> bool:
    """Whether `target`, linked from `page`, names a tracked file or a folder holding one, inside the root."""
    path = unquote(target.split("#", 1)[0])
    base = PurePosixPath() if path.startswith("/") else PurePosixPath(page).parent
    parts: list[str] = []
    for part in (base / path.lstrip("/")).parts:
        if part == "..":
            if not parts:
                return False  # above the repository's root
            parts.pop()
        elif part != ".":
            parts.append(part)
    name = "/".join(parts)
    return name in files or any(f.startswith(name + "/") for f in files)


def test_no_file_names_a_path_outside_the_repository() -> None:
    """No tracked file refers to the brief or the notes outside the repository."""
    found = sorted(
        f"{name}:{number}: {marker}"
        for name in tracked()
        if (text := text_of(name)) is not None
        for number, line in enumerate(text.splitlines(), 1)
        for marker in OUTSIDE
        if marker in line
    )
    assert found == []


def test_every_relative_markdown_link_names_a_tracked_file() -> None:
    """Every relative link and image of every tracked Markdown page leads to a file or folder of the repository."""
    files = set(tracked())
    broken = sorted(
        f"{page}: {target}"
        for page in files
        if page.endswith(".md") and (text := text_of(page)) is not None
        for target in relative_links(text)
        if not resolves(page, target, files)
    )
    assert broken == []


def test_the_readme_links_the_architecture() -> None:
    """README.md links docs/architecture.md, which exists: the check above has a link to check."""
    readme = text_of("README.md")
    assert readme is not None
    assert "docs/architecture.md" in relative_links(readme)
    assert (ROOT / "docs" / "architecture.md").is_file()


def test_relative_links_skip_code_other_sites_and_anchors() -> None:
    """Links in code blocks and spans, to other sites, to mail and to anchors are not the repository's."""
    page = (
        "See [the design](docs/architecture.md#guarantees) and ![shot](docs/shot.png 'a title').\n"
        "[site](https://example.org/x.md) [mail](mailto:desk@example.org) [here](#services)\n"
        "`[code](nowhere.md)`\n"
        "```\n[fenced](nowhere-either.md)\n```\n"
        "[ref]: ../outside.md\n"
    )
    expected = ["docs/architecture.md#guarantees", "docs/shot.png", "../outside.md"]
    assert expected == relative_links(page)


def test_resolution_is_relative_to_the_page_and_stays_inside() -> None:
    """A link resolves from its page's folder, an anchor is ignored, and nothing above the root resolves."""
    files = {"README.md", "docs/architecture.md", "docs/webhooks.md", "services/router/policy.py"}
    assert resolves("README.md", "docs/architecture.md#sharing-rules", files)
    assert resolves("docs/webhooks.md", "architecture.md", files)
    assert resolves("docs/webhooks.md", "../services/router", files)
    assert not resolves("docs/webhooks.md", "docs/architecture.md", files)
    assert not resolves("README.md", "../README.md", files)
    assert not resolves("README.md", "docs/missing.md", files)
