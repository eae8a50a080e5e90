"""The docs a newcomer reads hold together: every relative link in README.md, docs/*.md,
MODELS.md and BENCHMARKS.md reaches a file that exists and, with `#anchor`, a heading of it
(GitHub's anchors); every `docs/<name>.md` named in the repository's code, configs and docs
exists; a quoted section name after a doc's name (BENCHMARKS.md, "Pivotal tuning") is one of
its headings; and the README keeps naming the two commands CI and a newcomer run."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md", "MODELS.md", "BENCHMARKS.md"] + sorted(
    os.path.join("docs", n) for n in os.listdir(os.path.join(REPO, "docs")) if n.endswith(".md"))
TEXT_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".toml", ".sh", "Dockerfile", "Makefile")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6} +(.+?) *#* *$", re.M)
DOC_PATH = re.compile(r"\bdocs/[\w-]+\.md\b")
# a doc named, then a quoted section of it: MODELS.md ("The demo on this model"),
# BENCHMARKS.md, "Pivotal tuning", docs/at-scale.md "Run on a cluster"
SECTION_REF = re.compile(
    r"\b(README(?:\.md)?|MODELS\.md|BENCHMARKS\.md|docs/[\w-]+\.md),? \(?\"([^\"]+)\"")
RUN_IN = re.compile(r"^\*\*([^*]+)\*\*", re.M)    # a paragraph's bold lead: **Runners.** ...


def read(rel: str) -> str:
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links live."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def headings(rel: str) -> list:
    """The heading texts of a markdown file, outside code blocks."""
    return [h.strip() for h in HEADING.findall(FENCE.sub("", read(rel)))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def sections(rel: str) -> list:
    """What a reference may name in quotes: headings, and paragraphs' bold leads."""
    return headings(rel) + RUN_IN.findall(FENCE.sub("", read(rel)))


def anchors(rel: str) -> set:
    seen, out = {}, set()
    for h in headings(rel):
        s = slug(h)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def links(rel: str) -> list:
    """(target file relative to the repo, anchor or '') of every relative link in `rel`."""
    out = []
    for target in LINK.findall(prose(read(rel))):
        if re.match(r"[a-z]+:", target):                 # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = rel if not path else os.path.normpath(
            os.path.join(os.path.dirname(rel), path))
        out.append((resolved, anchor))
    return out


def repo_text_files() -> list:
    """The repository's code, configs and docs: git's tracked files where git answers (so
    outputs lying in a checkout are left out), else a walk that skips hidden folders."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        names = walk_repo()
    return [n for n in names if n.endswith(TEXT_SUFFIXES) or n.startswith(".ci/")]


def walk_repo() -> list:
    names = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d == ".ci" or not d.startswith((".", "_"))]
        names += [os.path.relpath(os.path.join(root, name), REPO) for name in files]
    return names


def test_slug_follows_githubs_rule():
    assert slug("Any z -> image generator (PGGAN, DCGAN, BigGAN-like)") == \
        "any-z---image-generator-pggan-dcgan-biggan-like"
    assert slug("The demo on this model (a fresh `make demo`, 2026-11-27)") == \
        "the-demo-on-this-model-a-fresh-make-demo-2026-11-27"
    assert slug("With the field's models") == "with-the-fields-models"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_reaches_a_file_and_its_heading(doc):
    broken = []
    for target, anchor in links(doc):
        if not os.path.exists(os.path.join(REPO, target)):
            broken.append(f"{target} (no such file)")
        elif anchor and (not target.endswith(".md") or anchor not in anchors(target)):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{doc}: " + ", ".join(broken)


def test_the_readme_links_every_doc():
    linked = {target for target, _ in links("README.md")}
    assert set(DOCS) - {"README.md"} <= linked


def test_every_docs_path_named_in_the_repository_exists():
    missing = sorted({(rel, path) for rel in repo_text_files()
                      for path in DOC_PATH.findall(read(rel))
                      if not os.path.exists(os.path.join(REPO, path))})
    assert not missing


def names_section(quoted: str, section: str) -> bool:
    """A quote names a section by its start ("Pivotal tuning"), or by its end after an
    ellipsis ("... the hybrid in fewer steps"); line breaks count as spaces."""
    quoted, section = " ".join(quoted.lower().split()), section.lower()
    if quoted.startswith("..."):
        return quoted[3:].strip() in section
    return section.startswith(quoted)


def test_every_quoted_section_of_a_doc_is_one_of_its_headings():
    stale = []
    for rel in repo_text_files():
        for doc, section in SECTION_REF.findall(read(rel)):
            doc = "README.md" if doc == "README" else doc
            if not any(names_section(section, s) for s in sections(doc)):
                stale.append(f'{rel}: {doc} "{section}"')
    assert not stale


def test_the_readme_names_the_two_commands_ci_and_a_newcomer_run():
    readme = read("README.md")
    targets = re.findall(r"^([\w-]+):", read("Makefile"), re.M)
    for command in ("make demo", "make test"):
        assert command in readme and command.split()[1] in targets, command
    assert re.search(r"^make test\b", read(".ci/run"), re.M)
