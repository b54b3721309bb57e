"""batsnn.fileio: names shown escaped and cut, one-line messages, paths described, bounded
JSON (the rest of fileio is exercised by every table in tests/hostile)."""

import json
import os

import pytest

from batsnn import fileio


def test_printable_escapes_control_characters_and_cuts_long_text():
    assert fileio.printable("run\x1b[2Jdir\x07") == "run\\x1b[2Jdir\\x07"
    assert fileio.printable("a\u009bb") == "a\\x9bb"  # a C1 control (CSI)
    assert fileio.printable("tab\tok") == "tab\\tok"
    assert fileio.printable("plain text") == "plain text"
    long = "x" * 500
    assert fileio.printable(long) == "x" * 200 + "..."
    assert fileio.printable(long, limit=10) == "x" * 10 + "..."


def test_one_line_joins_lines_and_names_an_empty_error():
    assert fileio.one_line(ValueError("first\n  second\n\nthird")) == "first second third"
    assert fileio.one_line(KeyError()) == "KeyError"


def test_describe_path_names_what_is_there(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert fileio.describe_path(f) == "is a file"
    assert fileio.describe_path(tmp_path) == "is a directory"
    assert fileio.describe_path(fifo) == "is a named pipe (FIFO)"
    assert fileio.describe_path("/dev/null") == "is a device"
    assert fileio.describe_path(link) == "is a broken symbolic link"
    assert fileio.describe_path(tmp_path / "none") == "does not exist"
    assert fileio.describe_path(f / "under").startswith("does not exist")


def test_loads_json_bounds_nesting_and_refuses_nan():
    ok = "[" * fileio.MAX_NESTING + "]" * fileio.MAX_NESTING
    assert fileio.loads_json(ok, "f.json") is not None
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="f.json is nested more than 64 levels"):
        fileio.loads_json(deep, "f.json")
    with pytest.raises(ValueError, match="f.json holds NaN"):
        fileio.loads_json('{"a": NaN}', "f.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        fileio.loads_json("{", "f.json")
    # brackets inside strings do not count
    assert fileio.loads_json(json.dumps({"k": "[" * 1000}), "f.json") == {"k": "[" * 1000}


def test_check_nesting_walks_without_recursion():
    d: dict = {}
    for _ in range(100_000):
        d = {"a": d}
    with pytest.raises(ValueError, match="settings is nested more than 64 levels"):
        fileio.check_nesting(d, "settings")
    fileio.check_nesting({"a": [1, {"b": 2}]}, "settings")
