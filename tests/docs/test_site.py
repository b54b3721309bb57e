"""The documentation site: every page in the navigation, the generated reference pages
complete, and (slow, with the ``docs`` extra installed) a strict build."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load_hook():
    spec = importlib.util.spec_from_file_location("reference_hook",
                                                  DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:"):]
    return set(re.findall(r"([\w./-]+\.md)\s*$", nav, re.M))


def test_every_page_is_in_the_navigation():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
             if "hooks" not in p.parts
             and not p.is_relative_to(DOCS / "dt-study") and not p.is_relative_to(DOCS / "convergence")}
    nav = _nav_pages()
    assert pages - nav == set()
    generated = {p for p in nav if p.startswith("reference/")}
    assert nav - pages == generated


def test_studies_are_included_not_copied():
    nav = _nav_pages()
    for page in ("dt-study.md", "convergence.md", "nir.md", "multi-gpu.md", "model.md"):
        assert page in nav
    for p in DOCS.rglob("*.md"):
        if p.name not in ("dt-study.md", "convergence.md", "nir.md", "multi-gpu.md"):
            assert p.name.lower() not in ("dt-study.md", "convergence.md", "nir.md")


def test_cli_reference_lists_every_option():
    from batsnn import cli

    page = _load_hook().cli_page()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        assert f"`batsnn {name}`" in page
        for action in p._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page or f", {flag}" in page, (name, flag)


def test_config_reference_lists_every_setting_preset_and_layer_type():
    import dataclasses

    from batsnn.experiments import config, model

    page = _load_hook().config_page()
    for f in dataclasses.fields(config.TrainConfig):
        assert f"| `{f.name}` |" in page
    for name in config.PRESETS:
        assert f"### `{name}`" in page
    for name in model.LAYER_TYPES:
        assert f"| `{name}` |" in page
    # the ranges come from the validator itself
    assert "must be in [0, 4294967295]" in page  # seed
    assert "must be 'count' or 'ttfs'" in page  # loss


def test_api_reference_covers_every_public_module():
    from tests.docs import docstrings

    hook = _load_hook()
    assert hook.public_modules() == docstrings.public_modules()
    pages = hook.pages()
    for m in docstrings.public_modules():
        # batsnn/ops/ has no __init__.py: its modules are read as the namespace package ops
        target = m.removeprefix("batsnn.") if m.startswith("batsnn.ops.") else m
        assert f"::: {target}\n" in pages[f"reference/api/{m}.md"]


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


def test_sphinx_roles_are_shown_as_code():
    hook = _load_hook()
    html = "see :func:<code>batsnn.discretize</code> and :class:<code>~batsnn.params.LIFParams</code>"
    assert hook.on_page_content(html) == \
        "see <code>batsnn.discretize</code> and <code>batsnn.params.LIFParams</code>"
    assert hook.on_page_content("a: <code>x</code>") == "a: <code>x</code>"


def test_settings_types_never_break_a_table_row():
    page = _load_hook().config_page()
    rows = [r for r in page.splitlines() if r.startswith("| `") and r.count("|") >= 6]
    assert rows and all(r.count(" | ") == 4 for r in rows if "\\|" not in r)
    assert "`str or None`" in page and "\\|" not in page.split("## Presets")[0]
