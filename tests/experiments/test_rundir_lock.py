"""One writer per output directory (``rundir.hold_out_dir``), default run names of their own
(``rundir.new_run_dir``), output checks that create nothing (``rundir.check_out``), and the
names in output-directory messages shown escaped and described."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from batsnn.experiments import rundir as R

SRC = Path(R.__file__).resolve().parents[2]


def env_with_src():
    """The environment with this checkout's ``src`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("BATSNN_DEBUG", None)
    return env


class Holder:
    """Another process that holds ``path`` (through ``hold_out_dir``) until stopped."""

    def __init__(self, path: Path, kind: str = "train"):
        code = textwrap.dedent(f"""
            import sys
            from batsnn.experiments.rundir import hold_out_dir
            with hold_out_dir({str(path)!r}, {kind!r}, resume=True):
                print("held", flush=True)
                sys.stdin.readline()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env_with_src())
        assert self.proc.stdout.readline().strip() == "held"
        self.pid = self.proc.pid

    def stop(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


@pytest.fixture
def holder():
    made = []

    def start(path, kind="train"):
        made.append(Holder(path, kind))
        return made[-1]

    yield start
    for h in made:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


def test_hold_out_dir_locks_records_the_pid_and_cleans_up(tmp_path):
    out = tmp_path / "new" / "run"
    with R.hold_out_dir(out, "train") as existing:
        assert existing is False and out.is_dir()
        assert (out / R.LOCK_FILE).read_text().strip() == str(os.getpid())
        assert R.dir_entries(out) == []  # the lock is not content
        assert R.prepare_out(out, "train") is False  # a fresh directory stays "empty"
    assert list(out.iterdir()) == []  # the lock file goes with the lock


def test_hold_out_dir_is_reentrant_and_sequential_in_one_process(tmp_path):
    out = tmp_path / "run"
    with R.hold_out_dir(out, "train"):
        with R.hold_out_dir(out, "train"):  # a nested hold shares the lock
            assert (out / R.LOCK_FILE).is_file()
        assert (out / R.LOCK_FILE).is_file()  # still held by the outer block
    for _ in range(3):  # sequential runs take it afresh
        with R.hold_out_dir(out, "train", resume=True):
            R.write_json(out / "config.json", {R.MARKER: "train"})
        assert not (out / R.LOCK_FILE).exists()
    with pytest.raises(R.RunExists, match="already holds a run"):
        with R.hold_out_dir(out, "train"):
            pass
    with R.hold_out_dir(out, "train", resume=True) as existing:
        assert existing is True


def test_a_second_process_is_refused_naming_the_holder(tmp_path, holder):
    out = tmp_path / "run"
    h = holder(out)
    with pytest.raises(R.OutDirBusy, match=rf"'{out}' is in use by batsnn process {h.pid} "):
        with R.hold_out_dir(out, "train"):
            pass
    with pytest.raises(R.OutDirBusy, match=str(h.pid)):  # the check that creates nothing
        R.check_out(out, "train")
    h.stop()
    with R.hold_out_dir(out, "train"):
        assert (out / R.LOCK_FILE).read_text().strip() == str(os.getpid())


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child takes the lock, says so, and waits to be killed
        try:
            os.close(r)
            with R.hold_out_dir(out, "train"):
                os.write(w, b"x")
                time.sleep(120)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
        with pytest.raises(R.OutDirBusy, match=f"batsnn process {pid} "):
            with R.hold_out_dir(out, "train"):
                pass
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    assert (out / R.LOCK_FILE).read_text().strip() == str(pid)  # left behind, stale
    assert R.prepare_out(out, "train") is False  # and not content
    with R.hold_out_dir(out, "train"):
        assert (out / R.LOCK_FILE).read_text().strip() == str(os.getpid())
    assert list(out.iterdir()) == []


def test_a_stale_lock_file_with_a_dead_pid_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / R.LOCK_FILE).write_text(f"{dead.pid}\n")
    with R.hold_out_dir(out, "train") as existing:
        assert existing is False


def test_a_refused_directory_is_left_as_it_was(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(R.OutDirError, match="holds no batsnn output"):
        with R.hold_out_dir(theirs, "train"):
            pass
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    new = tmp_path / "new"
    with pytest.raises(RuntimeError, match="boom"):  # made here, empty: removed again
        with R.hold_out_dir(new, "train"):
            raise RuntimeError("boom")
    assert not new.exists()


def test_planted_lock_files_are_refused(tmp_path, victim):
    out = tmp_path / "dir"
    (out / R.LOCK_FILE).mkdir(parents=True)
    with pytest.raises(R.OutDirError, match=r"\.batsnn-lock' is a directory, expected the "
                                            "lock file"):
        with R.hold_out_dir(out, "train"):
            pass
    link = tmp_path / "link"
    link.mkdir()
    (link / R.LOCK_FILE).symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(R.OutDirError, match="is a symbolic link"):
        with R.hold_out_dir(link, "train"):
            pass
    assert victim.read_bytes() == before


@pytest.fixture
def victim(tmp_path):
    f = tmp_path / "victim.txt"
    f.write_text("precious")
    return f


def test_new_run_dir_names_are_unique(tmp_path):
    made = [R.new_run_dir("mnist-count", tmp_path / "runs") for _ in range(3)]
    assert len(set(made)) == 3 and all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert made[0].name.startswith("mnist-count-")
    for bad in ("", "a/b", "..", "x\x1b[2J"):
        with pytest.raises(ValueError, match="plain directory name"):
            R.new_run_dir(bad, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(R.OutDirError, match="is a file"):
        R.new_run_dir("run", tmp_path / "file")


@pytest.mark.slow  # four processes; test_a_second_process_is_refused_naming_the_holder runs
def test_new_run_dir_in_two_processes_at_once(tmp_path):  # by default
    code = ("from batsnn.experiments.rundir import new_run_dir\n"
            f"print(new_run_dir('p', {str(tmp_path)!r}))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=env_with_src()) for _ in range(4)]
    names = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert len(set(names)) == 4 and all(Path(n).is_dir() for n in names)


def test_check_out_creates_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    assert R.check_out(out, "train") is False
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(R.OutDirError, match="cannot be created: '.*f' is a file"):
        R.check_out(tmp_path / "f" / "run", "train")
    run = tmp_path / "run"
    run.mkdir()
    R.write_json(run / "config.json", {R.MARKER: "train"})
    with pytest.raises(R.RunExists):
        R.check_out(run, "train")
    assert R.check_out(run, "train", resume=True) is True
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_paths_of_the_wrong_kind_are_described(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for check in (R.prepare_out, R.check_out):
        with pytest.raises(R.OutDirError, match=r"is a named pipe \(FIFO\), not a directory"):
            check(fifo, "train")
        with pytest.raises(R.OutDirError, match=r"is a device, not a directory"):
            check("/dev/null", "train")
    with pytest.raises(R.OutDirError, match=r"cannot be created: '.*fifo' is a named pipe"):
        R.prepare_out(fifo / "run", "train")
    with pytest.raises(R.CheckpointError, match=r"is a named pipe \(FIFO\), expected a file"):
        R.load_checkpoint(fifo)
    with pytest.raises(R.CheckpointError, match="is a directory, expected a file"):
        R.load_checkpoint(tmp_path)
    with pytest.raises(R.OutDirError, match=r"but it is a named pipe \(FIFO\)"):
        R.make_subdir(tmp_path, "fifo")
    with pytest.raises(R.OutDirError, match="cannot be used .File name too long."):
        R.prepare_out(tmp_path / ("x" * 300) / "run", "train")


def test_names_from_the_directory_are_escaped(tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "a\x1b[2Jb").write_text("x")
    with pytest.raises(R.OutDirError) as e:
        R.prepare_out(out, "train")
    assert "a\\x1b[2Jb" in str(e.value) and "\x1b" not in str(e.value)
    odd = tmp_path / "odd\x07dir"
    odd.write_text("x")
    with pytest.raises(R.OutDirError) as e:
        R.prepare_out(odd / "run", "train")
    assert "odd\\x07dir" in str(e.value) and "\x07" not in str(e.value)
    with pytest.raises(R.CheckpointError) as e:
        R.load_checkpoint(tmp_path / "no\x1bne.pt")
    assert "no\\x1bne.pt' does not exist" in str(e.value)


def test_a_file_system_without_locks_runs_unguarded(tmp_path, monkeypatch):
    import errno

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(R.fcntl, "flock", no_locks)
    with R.hold_out_dir(tmp_path / "run", "train") as existing:
        assert existing is False
    assert list((tmp_path / "run").iterdir()) == []

    def broken(fd, op):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(R.fcntl, "flock", broken)
    with pytest.raises(R.OutDirError, match=r"cannot be locked \(Input/output error\)"):
        with R.hold_out_dir(tmp_path / "run", "train"):
            pass
