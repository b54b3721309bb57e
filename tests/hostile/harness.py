"""One harness for the hostile-input tables of ``tests/hostile/``.

A table is a list of cases. A :class:`CliCase` is a ``batsnn`` command line that must end
with its exit status (2 for bad input) and ONE line on stderr that holds every word of
``words`` (never a traceback, never a raw control character). A :class:`LibCase` is a call
into the library that must raise one of ``errors`` with every word of ``words`` in the
message (or, with ``errors=()``, must succeed; ``after`` then checks what it did).

Every table runs in-process in the default test run (:func:`check_cli_in_process`,
:func:`check_lib`) and as real commands (``python -m batsnn`` in a subprocess, this
checkout's ``src`` first on ``PYTHONPATH``) under ``-m slow`` (:func:`check_cli_commands`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

SRC = Path(__file__).resolve().parents[2] / "src"

#: Characters that must never reach a terminal raw (C0 controls but tab, DEL, C1 controls).
CONTROL = {chr(c) for c in range(32) if chr(c) not in "\t\n"} | {chr(127)} | {
    chr(c) for c in range(0x80, 0xA0)}


class CliCase(NamedTuple):
    id: str
    argv: list
    words: tuple = ()  # each must appear in the one error line
    status: int = 2
    after: Callable[[], None] | None = None  # checked after the command (no argument)


class LibCase(NamedTuple):
    id: str
    call: Callable[[], object]
    errors: tuple = (ValueError, TypeError)  # () = must succeed
    words: tuple = ()  # each must appear in the message
    after: Callable[[object], None] | None = None  # given the call's result


def check_error_line(case: CliCase, rc: int, err: str) -> None:
    """The command ended with ``case.status`` and, for a failure, one clean line."""
    assert rc == case.status, f"{case.id}: exit status {rc} != {case.status}, stderr: {err}"
    assert "Traceback" not in err, f"{case.id}: {err}"
    if case.status != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr: {err!r}"
        assert lines[0].startswith("batsnn: error: "), f"{case.id}: {lines[0]!r}"
        raw = sorted(CONTROL & set(lines[0]))
        assert not raw, f"{case.id}: raw control characters {raw!r} in {lines[0]!r}"
        for w in case.words:
            assert w in lines[0], f"{case.id}: {w!r} not in {lines[0]!r}"
    if case.after is not None:
        case.after()


def check_cli_in_process(cases: list[CliCase], capsys, monkeypatch, cache: Path) -> None:
    """Run every case through ``batsnn.cli.main`` in this process."""
    from batsnn import cli

    monkeypatch.setenv("BATSNN_DATA", str(cache))  # never prepare MNIST
    monkeypatch.delenv("BATSNN_DEBUG", raising=False)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in cases:
        capsys.readouterr()
        rc = cli.main([str(a) for a in case.argv])
        check_error_line(case, rc, capsys.readouterr().err)


def check_cli_commands(cases: list[CliCase], cache: Path, jobs: int = 2) -> None:
    """Run every case as a real ``python -m batsnn`` process."""
    env = {k: v for k, v in os.environ.items() if k != "BATSNN_DEBUG"}
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env["BATSNN_DATA"] = str(cache)

    def run(case):
        res = subprocess.run([sys.executable, "-m", "batsnn", *map(str, case.argv)],
                             capture_output=True, text=True, env=env, timeout=600,
                             stdin=subprocess.DEVNULL)
        return case, res

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for case, res in pool.map(run, cases):
            check_error_line(case, res.returncode, res.stderr)


def check_lib(cases: list[LibCase]) -> None:
    """Call every library case; a failure must be one of its errors, naming its words."""
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in cases:
        if not case.errors:
            result = case.call()
        else:
            try:
                result = case.call()
            except case.errors as e:
                msg = str(e)
                assert msg.strip(), f"{case.id}: {type(e).__name__} with an empty message"
                for w in case.words:
                    assert w in msg, f"{case.id}: {w!r} not in {msg!r}"
                continue
            except BaseException as e:  # noqa: BLE001 - the wrong kind of error is the failure
                raise AssertionError(f"{case.id}: raised {type(e).__name__}: {e!r}, "
                                     f"expected one of {case.errors}") from e
            raise AssertionError(f"{case.id}: no error (returned {result!r:.200})")
        if case.after is not None:
            case.after(result)
