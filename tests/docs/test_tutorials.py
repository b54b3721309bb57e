"""The tutorials: every script runs in a fresh directory and writes its figure (slow), and
every script has its page, which shows the script and the figure (fast)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
SCRIPTS = sorted(p.stem for p in TUTORIALS.glob("t[0-9]_*.py"))


def test_six_tutorials():
    assert [s[:2] for s in SCRIPTS] == ["t1", "t2", "t3", "t4", "t5", "t6"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_tutorial_has_a_page_with_script_and_figure(script):
    pages = [p for p in TUTORIALS.glob("0*.md") if f'--8<-- "{script}.py"' in p.read_text()]
    assert len(pages) == 1, f"{script}.py is included by {len(pages)} pages"
    assert f"](figures/{script}.png)" in pages[0].read_text()
    assert (TUTORIALS / "figures" / f"{script}.png").is_file()
    text = (TUTORIALS / f"{script}.py").read_text()
    assert f'savefig("{script}.png"' in text, "the figure is named after the script"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_runs_and_writes_its_figure(script, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    done = subprocess.run([sys.executable, str(TUTORIALS / f"{script}.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figure = tmp_path / f"{script}.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
