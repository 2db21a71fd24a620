"""The README and the pages of docs/: every relative link and image points at a file that exists,
every anchor at a heading of its page; the README stays a welcome (under 150 lines, the two set-up
commands first, the second the one .ci/run runs)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)


def _prose(text: str) -> str:
    """The page without code blocks and HTML comments: links there are not links."""
    return COMMENT.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, hyphens and
    spaces kept), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())      # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page: one per heading, repeated ones numbered (-1, -2) as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(_prose(page.read_text(encoding="utf-8")))


def test_slug_follows_githubs_rule():
    assert slug("Choosing the weights") == "choosing-the-weights"
    assert slug("GPU (CuPy)") == "gpu-cupy"
    assert slug("The calibrated weights' ranges (`numpynst/objective.py`: `WEIGHT_RANGES`, `DEFAULT_TV_WEIGHT`)") == \
        "the-calibrated-weights-ranges-numpynstobjectivepy-weight_ranges-default_tv_weight"
    assert slug("Quality per evaluation: numpynst vs `torch.optim.LBFGS` (`quality.py`)") == \
        "quality-per-evaluation-numpynst-vs-torchoptimlbfgs-qualitypy"


def test_the_link_reader_finds_links_and_images_but_not_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# T\n[a](x.md) ![b](img/y.png \"title\") [c [d]](z.md#t)\n```\n[no](nope.md)\n```\n"
                    "<!-- [no](gone.md) -->\n", encoding="utf-8")
    assert links(page) == ["x.md", "img/y.png", "z.md#t"]
    assert anchors(page) == {"t"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    found = links(page)
    assert found, f"{page.name} links nowhere"
    bad = []
    for target in found:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):          # https:, mailto: ...: not a file
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    targets = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in targets]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_readme_is_a_welcome_with_the_two_commands_first():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150
    assert lines[2] == "```bash" and lines[5] == "```"
    install, test = lines[3], lines[4]
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install . && ")
    assert test.endswith('pip install ".[test]" && .venv/bin/python -m pytest -q -rs')
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -q ".[test]" && python -m pytest -q -rs' in ci    # the same command, in CI's venv
