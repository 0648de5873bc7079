"""Outputs are written safely: one writer per output (a second one fails at once with one
line), a killed writer's leftovers are cleaned by the next write, ``--force`` never leaves
``-o`` missing, a model file is never written onto its own input, an unwritable or full
disk is one line; and the CLI's start-up: Ctrl-C is one line, ``import mimoc`` is cheap.

Crashes are real where it matters: a child process is SIGKILLed (or ``os._exit``s) at the
chosen step, with no handler able to run, then the next write is checked."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import mimoc.fileio as fileio
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import MimocError, UsageError
from mimoc.fileio import (
    atomic_write,
    check_output_directory,
    claim_output,
    release_output,
    write_directory,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=8, v_dim=4)
TRAIN = ["train", "detnet", "--nt", "2", "--nr", "4", "--layers", "1", "--hidden", "4",
         "--steps", "1", "--batch", "4", "--val-batch", "4", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(build_detector("detnet", **CONFIG).eval(), path)
    return path


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and err.startswith("mimoc: error:")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def child(code: str) -> subprocess.Popen:
    """A python child running ``code`` with this checkout's mimoc (stdin/stdout piped)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(process: subprocess.Popen, line: str) -> None:
    got = process.stdout.readline().strip()
    assert got == line, (got, process.stderr.read() if process.poll() is not None else "")


# ---------------------------------------------------------------------------- the lock

def test_a_second_writer_fails_at_once_and_the_first_writes_intact(capsys, checkpoint,
                                                                     tmp_path):
    out = tmp_path / "art"
    first = child(f"""
        from mimoc.fileio import check_output_directory, write_directory
        check_output_directory({str(out)!r})      # claimed before the slow work
        print("claimed", flush=True)
        input()                                     # the slow work
        write_directory({{"first.txt": b"first"}}, {str(out)!r})
        """)
    try:
        wait_for(first, "claimed")
        code, err = cli(capsys, "compile", checkpoint, "-o", out)
        assert one_line_error(code, err), err
        assert f"being written by another mimoc process (pid {first.pid})" in err
        first.communicate("go\n", timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0
    assert contents(out) == {"first.txt": b"first"} and names(tmp_path) == ["art"]


@pytest.mark.parametrize("command", ["train", "quantize"])
def test_single_file_outputs_are_locked_too(capsys, checkpoint, tmp_path, command):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the first writer's file")
    lock = tmp_path / ".model.pt.mimoc-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        argv = TRAIN if command == "train" else ["quantize", checkpoint, "--method", "minmax"]
        code, err = cli(capsys, *argv, "-o", out, "--force")
        assert one_line_error(code, err) and "another mimoc process (pid 4242)" in err, err
        with pytest.raises(MimocError, match="pid 4242"), atomic_write(out) as handle:
            handle.write(b"second")
    finally:
        os.close(fd)
    assert out.read_bytes() == b"the first writer's file"
    assert names(tmp_path) == [".model.pt.mimoc-lock", "model.pt"]  # only the holder's lock


def test_the_lock_file_of_a_dead_process_does_not_block(tmp_path):
    (tmp_path / ".art.mimoc-lock").write_text("999999\n")  # its flock died with it
    write_directory({"a": b"1"}, tmp_path / "art")
    assert names(tmp_path) == ["art"]  # the lock file is removed on release


def test_a_claim_is_per_thread(tmp_path):
    out = tmp_path / "art"
    claim_output(out)
    claim_output(out)  # the same thread again: already held
    errors = []

    def other():
        try:
            claim_output(out)
        except MimocError as err:
            errors.append(str(err))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    release_output(out)
    assert len(errors) == 1 and "another thread of this process" in errors[0]
    assert names(tmp_path) == []


class Cumsum(nn.Module):
    def forward(self, H, y):
        return torch.cumsum(y @ H, dim=-1)


def test_a_failed_compile_leaves_no_lock_and_no_folder(capsys, checkpoint, tmp_path):
    from mimoc.api import compile as compile_model

    H, y = torch.randn(2, 8, 4), torch.randn(2, 3, 8)
    with pytest.raises(MimocError, match="cumsum"):
        compile_model(Cumsum(), out=tmp_path / "new" / "sub" / "art", example=(H, y))
    assert names(tmp_path) == []  # no lock file, no parent folder made for the output
    code, err = cli(capsys, "compile", checkpoint, "-o", tmp_path / "new2" / "art",
                    "--passes", "canonicalize,bogus")
    assert one_line_error(code, err) and names(tmp_path) == []


# ---------------------------------------------------------------- killed writers' leftovers

def test_leftovers_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    for name in (".art.mimoc-999999-abcdefgh.tmp", ".art.zyxwvu_1.tmp"):  # ours, older ones
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(b"half")
    (tmp_path / ".art.mimoc-999999-qqqqqqqq.tmp").write_bytes(b"half a file")
    others = [".art.b.mimoc-1-abcdefgh.tmp", ".artx.mimoc-1-abcdefgh.tmp", ".art.notours.tmp"]
    for name in others:  # temporaries of other outputs, or not ours: kept
        (tmp_path / name).write_bytes(b"")
    write_directory({"a": b"1"}, tmp_path / "art")
    assert names(tmp_path) == sorted(["art", *others])


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_a_writer_killed_mid_write_leaves_nothing_the_next_write_keeps(tmp_path, kind):
    out = tmp_path / ("art" if kind == "directory" else "m.pt")
    write = (f"write_directory({{'a': b'1', 'b': b'2'}}, {str(out)!r})" if kind == "directory"
             else f"with atomic_write({str(out)!r}) as f:\n    f.write(b'half'); f.flush(); "
                  "os.fsync(f.fileno())")
    writer = child(f"""
        import os, time
        from mimoc.fileio import atomic_write, write_directory
        real_fsync = os.fsync
        def fsync(fd):  # the second fsync blocks: the writer is half-way when it is killed
            fsync.calls += 1
            if fsync.calls == 2:
                print("writing", flush=True)
                time.sleep(120)
            real_fsync(fd)
        fsync.calls = {1 if kind == "file" else 0}  # a file has one fsync: the first here
        os.fsync = fsync
""" + textwrap.indent(write, "        "))
    try:
        wait_for(writer, "writing")
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    leftovers = [n for n in names(tmp_path) if n.startswith(f".{out.name}.mimoc-{writer.pid}-")]
    assert leftovers and not out.exists()  # what a kill leaves
    if kind == "directory":
        write_directory({"new": b"new"}, out)
        assert contents(out) == {"new": b"new"}
    else:
        with atomic_write(out) as handle:
            handle.write(b"new")
        assert out.read_bytes() == b"new"
    assert names(tmp_path) == [out.name]


# ------------------------------------------------------------------------ --force replacement

def old_and_new(tmp_path) -> Path:
    out = tmp_path / "art"
    write_directory({"old.txt": b"old"}, out)
    return out


def test_force_swaps_the_directories_in_one_step(tmp_path, monkeypatch):
    probe = [tmp_path / "probe-a", tmp_path / "probe-b"]
    for folder in probe:
        folder.mkdir()
    (probe[0] / "in-a").touch()
    if not fileio.exchange(*probe):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    assert names(probe[1]) == ["in-a"] and names(probe[0]) == []  # swapped
    for folder in probe:
        fileio._remove(folder)
    out = old_and_new(tmp_path)
    renamed = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (renamed.append(a), real_rename(a, b)))
    write_directory({"new.txt": b"new"}, out, force=True)
    assert renamed == []  # no step where -o is moved away
    assert contents(out) == {"new.txt": b"new"} and names(tmp_path) == ["art"]


CRASH_AFTER_SWAP = "fileio._remove = lambda path: os._exit(9)"
CRASH_BETWEEN_RENAMES = """
fileio.exchange = lambda a, b: False
real_rename = os.rename
def rename(a, b):
    rename.calls += 1
    if rename.calls == 2:   # old aside, the new one not yet in
        os._exit(9)
    real_rename(a, b)
rename.calls = 0
os.rename = rename
"""


@pytest.mark.parametrize("crash", ["after the swap", "between the renames"])
def test_a_crash_during_force_never_loses_the_output(tmp_path, crash):
    out = old_and_new(tmp_path)
    patch = CRASH_AFTER_SWAP if crash == "after the swap" else CRASH_BETWEEN_RENAMES
    writer = child("import os\nimport mimoc.fileio as fileio\n" + patch +
                   f"\nfileio.write_directory({{'new.txt': b'new'}}, {str(out)!r}, force=True)")
    writer.communicate(timeout=60)
    assert writer.returncode == 9
    # the next write (here one that is refused: -o is not empty) first repairs and cleans
    with pytest.raises(UsageError, match="--force"):
        check_output_directory(out)
    expected = {"new.txt": b"new"} if crash == "after the swap" else {"old.txt": b"old"}
    assert contents(out) == expected and names(tmp_path) == ["art"]


@pytest.mark.parametrize("failure", ["exchange fails", "second rename fails"])
def test_a_failed_force_keeps_the_old_output(tmp_path, monkeypatch, failure):
    out = old_and_new(tmp_path)
    if failure == "exchange fails":
        def exchange(a, b):
            raise OSError(errno.EIO, "Input/output error")
    else:
        def exchange(a, b):
            return False
        real_rename, calls = os.rename, []

        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:
                raise OSError(errno.EIO, "Input/output error")
            real_rename(a, b)

        monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(fileio, "exchange", exchange)
    with pytest.raises(MimocError, match="Input/output error"):
        write_directory({"new.txt": b"new"}, out, force=True)
    assert contents(out) == {"old.txt": b"old"} and names(tmp_path) == ["art"]


# ------------------------------------------------------------------- single-file outputs

@pytest.mark.parametrize("alias", ["same path", "symlink", "hard link"])
def test_quantize_refuses_to_write_onto_its_input(capsys, checkpoint, tmp_path, alias):
    model = tmp_path / "m.pt"
    model.write_bytes(checkpoint.read_bytes())
    out = model
    if alias == "symlink":
        out = tmp_path / "link.pt"
        out.symlink_to(model)
    elif alias == "hard link":
        out = tmp_path / "hard.pt"
        os.link(model, out)
    code, err = cli(capsys, "quantize", model, "--method", "minmax", "-o", out)
    assert one_line_error(code, err) and "is the input model" in err, err
    assert model.read_bytes() == checkpoint.read_bytes()


def test_train_into_a_read_only_folder_is_one_line(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open = os.open

    def read_only(path, *args, **kwargs):  # root ignores chmod: a read-only mount, simulated
        if str(path).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, err = cli(capsys, *TRAIN, "-o", folder / "m.pt")
    assert one_line_error(code, err) and "Read-only file system" in err, err
    assert names(folder) == []


class FullDisk(io.FileIO):
    """A file on a disk with 1000 bytes left."""

    def write(self, data):
        if self.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_train_onto_a_full_disk_is_one_line_and_keeps_the_old_file(capsys, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous checkpoint")
    monkeypatch.setattr(fileio.io, "FileIO", FullDisk)
    code, err = cli(capsys, *TRAIN, "-o", out, "--force")
    assert one_line_error(code, err) and "No space left on device" in err, err
    assert out.read_bytes() == b"previous checkpoint" and names(tmp_path) == ["m.pt"]


def test_a_full_disk_under_torch_save_raises_the_disk_error(tmp_path, monkeypatch):
    # torch.save turns the failed write into "RuntimeError: ... unexpected pos"; the
    # caller gets the OSError that says what happened instead
    monkeypatch.setattr(fileio.io, "FileIO", FullDisk)
    with pytest.raises(OSError) as caught, atomic_write(tmp_path / "big.pt") as handle:
        torch.save({"w": torch.zeros(100_000)}, handle)
    assert caught.value.errno == errno.ENOSPC and names(tmp_path) == []


# ----------------------------------------------------------------------------- ber sizes

@pytest.mark.parametrize("argv, message", [
    (["--nt", "100000", "--nr", "100000"], "more than 1024 antennas"),
    (["--nt", "4", "--nr", "5000"], "--nr 5000 is more than 1024"),
    (["--nt", "4", "--nr", "8", "--slot", "4000000000"], "use smaller --nt/--nr/--slot"),
    (["--nt", "1000", "--nr", "1000", "--batch", "1000000"], "smaller --batch"),
])
def test_ber_refuses_links_that_cannot_fit_before_allocating(capsys, monkeypatch, argv,
                                                             message):
    from mimoc.commands import ber, ber_memory

    monkeypatch.setattr(ber_memory, "available_memory", lambda: 8 * 10 ** 9)
    monkeypatch.setattr(ber.MIMOSystem, "sample", lambda *a, **k: pytest.fail("allocated"))
    code, err = cli(capsys, "ber", *argv, "--no-progress")
    assert one_line_error(code, err) and message in err, err


def test_ber_memory_estimate_grows_with_the_batch():
    from mimoc.commands.ber_memory import batch_bytes

    assert batch_bytes(4, 8, 1, 1) < 10 ** 4  # a small link is tiny
    assert batch_bytes(100_000, 100_000, 1, 1) > 80 * 10 ** 9  # the tester's: over 80 GB
    assert batch_bytes(8, 8, 2, 10) == 10 * batch_bytes(8, 8, 2, 1)


# ------------------------------------------------------------------------------ start-up

def test_ctrl_c_while_importing_is_one_line_and_status_130():
    # the real signal, 0.1 s into main(): torch and the zoo are being imported
    process = child("""
        import os, signal, threading
        from mimoc.cli import main
        # a shell's background job starts with SIGINT ignored, and so would this child
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        raise SystemExit(main(["ber", "--help"]))
        """)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err == "mimoc: interrupted\n" and out == "", err


def test_ctrl_c_anywhere_in_main_is_one_line(capsys, monkeypatch):
    import mimoc.cli as cli_module

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_module", interrupted)
    assert main(["ber"]) == 130
    assert capsys.readouterr().err == "mimoc: interrupted\n"


def test_python_m_mimoc_help_works():
    done = subprocess.run([sys.executable, "-m", "mimoc", "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.startswith("usage: mimoc"), done.stderr
    assert "compile" in done.stdout and done.stderr == ""


def test_import_mimoc_is_cheap_and_every_public_name_still_works():
    process = child("""
        import sys
        import mimoc, mimoc.cli
        assert "torch" not in sys.modules, "import mimoc loaded torch"
        assert all(getattr(mimoc, name) is not None for name in mimoc.__all__)
        assert set(mimoc.__all__) <= set(dir(mimoc))
        print("ok")
        """)
    out, err = process.communicate(timeout=120)
    assert out == "ok\n", err
