"""The first-use build of the C++ kernel: locking, the cache key, and SPARSE_RATIONAL_IMPL.

The build tests run the build in fresh processes (as `train` and `predict` do) against a
temporary ``TORCH_EXTENSIONS_DIR``: one session-wide build, plus one for the SIGKILL test.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparse_rational import ops
from sparse_rational.cli import main
from sparse_rational.errors import UserError
from sparse_rational.ops import cpu

BUILD_TIMEOUT = 600  # seconds for a compile on a busy machine; a hang fails, never blocks

# The child reports, on stdout, whether the kernel loaded, and why not.
LOAD = (
    "import sparse_rational.ops.cpu as c\n"
    "ok = c.cpp_available()\n"
    "print('loaded' if ok else 'failed: ' + str(c.build_error()))\n"
)


def child_env(ext_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (cpu.WAIT_ENV_VAR, ops.ENV_VAR)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # ninja
    env["TORCH_EXTENSIONS_DIR"] = str(ext_dir)
    env.update(extra)
    return env


def run_child(code: str, ext_dir: Path, timeout: float, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=child_env(ext_dir, **extra), capture_output=True, text=True, timeout=timeout
    )
    return proc, time.monotonic() - start


def only_build_dir(ext_dir: Path) -> Path:
    dirs = [p for p in ext_dir.iterdir() if p.is_dir() and p.name.startswith("sparse_rational_cpu_")]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The build folder of one complete build in a private TORCH_EXTENSIONS_DIR."""
    ext_dir = tmp_path_factory.mktemp("torch_extensions")
    proc, _ = run_child(LOAD, ext_dir, BUILD_TIMEOUT)
    if proc.stdout.strip() != "loaded":
        pytest.skip(f"the C++ kernel does not build here: {proc.stdout.strip()} {proc.stderr[-300:]}")
    build_dir = only_build_dir(ext_dir)
    assert (build_dir / cpu._STAMP).is_file()
    assert not (build_dir / cpu._BATON).exists()
    return build_dir


def stderr_lines(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


# --- a stale torch lock ----------------------------------------------------------------


def test_stale_torch_lock_is_removed_with_one_line(built):
    """A `lock` file left by a killed build (no process holds our flock) used to make every
    later process wait forever; now the next one removes it, says so, and loads."""
    baton = built / cpu._BATON
    (built / cpu._STAMP).unlink()  # a killed build never stamped its folder
    baton.write_text("")
    proc, seconds = run_child(LOAD, built.parent, timeout=120)
    assert proc.stdout.strip() == "loaded", proc.stderr
    assert stderr_lines(proc) == [f"sparse-rational: removed a stale build lock left by an interrupted build: {baton}"]
    assert not baton.exists()
    assert (built / cpu._STAMP).is_file()  # ninja found it up to date, and it is stamped again
    assert seconds < 60  # no recompile


def test_complete_build_loads_without_the_lock(built):
    """A stamped library loads at once, even while another process holds the build lock
    (and with a stale torch lock lying around)."""
    assert (built / cpu._STAMP).is_file()
    (built / cpu._BATON).write_text("")
    fd = os.open(built / cpu._FLOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc, _ = run_child(LOAD, built.parent, timeout=60, **{cpu.WAIT_ENV_VAR: "0"})
    finally:
        os.close(fd)
        (built / cpu._BATON).unlink()
    assert proc.stdout.strip() == "loaded", proc.stderr
    assert stderr_lines(proc) == []


# --- a live build that never finishes --------------------------------------------------

CHOOSE = (
    "import time, warnings, torch\n"
    "import sparse_rational.ops as ops\n"
    "with warnings.catch_warnings(record=True) as caught:\n"
    "    warnings.simplefilter('always')\n"
    "    start = time.monotonic()\n"
    "    impl = ops.choose_impl(torch.zeros(2, 1, 3))\n"
    "    seconds = time.monotonic() - start\n"
    "print(impl, round(seconds, 1))\n"
    "for w in caught:\n"
    "    print('WARNING', w.category.__name__, str(w.message))\n"
)


def test_lock_held_by_a_live_process_falls_back_to_scan(built):
    """Another process holds the build lock and never finishes: after the configured wait
    this one gives up, with one warning line, and uses the scan kernel."""
    (built / cpu._STAMP).unlink()  # as if the other process were still building it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(built / cpu._FLOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc, _ = run_child(CHOOSE, built.parent, timeout=120, **{cpu.WAIT_ENV_VAR: "2"})
    finally:
        holder.kill()
        holder.wait()
    lines = proc.stdout.splitlines()
    impl, seconds = lines[0].split()
    assert impl == "scan", proc.stdout + proc.stderr
    assert 2 <= float(seconds) < 30
    warnings = [ln for ln in lines[1:] if ln.startswith("WARNING")]
    assert len(warnings) == 1, lines
    assert warnings[0].startswith("WARNING RuntimeWarning")
    assert f"pid {holder.pid}" in warnings[0] and cpu.WAIT_ENV_VAR in warnings[0]
    assert stderr_lines(proc) == []  # nothing else: the "waiting" note comes after 5 s only
    # the holder is gone (its flock with it): the next process builds, stamps, and loads
    proc, _ = run_child(LOAD, built.parent, timeout=BUILD_TIMEOUT, **{cpu.WAIT_ENV_VAR: "2"})
    assert proc.stdout.strip() == "loaded", proc.stderr
    assert (built / cpu._STAMP).is_file()


def test_build_lock_waits_says_so_and_gives_up(monkeypatch, tmp_path, capsys):
    """In process: a free lock is taken at once (and names its holder); a held one is
    waited for until the deadline, with one note on stderr once the wait gets long."""
    path = tmp_path / cpu._FLOCK
    with cpu._build_lock(path, time.monotonic()) as locked:
        assert locked and path.read_text() == str(os.getpid())
    monkeypatch.setattr(cpu, "_NOTE_AFTER", 0.3)
    other = os.open(path, os.O_RDWR)  # another open file: flock conflicts with it
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(cpu.BuildLockTimeout, match=cpu.WAIT_ENV_VAR) as info:
            with cpu._build_lock(path, start + 1.0):
                pytest.fail("got a lock that another open file holds")
        assert 1.0 <= time.monotonic() - start < 10
    finally:
        os.close(other)
    assert f"(pid {os.getpid()})" in str(info.value) and "\n" not in str(info.value)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sparse-rational: waiting up to 1 s for another process"), lines


# --- SIGKILL in the middle of a build --------------------------------------------------


def test_sigkill_during_the_build_then_a_new_process_succeeds(tmp_path):
    """Kill the building process (only it: its ninja and compiler run on, orphaned), then
    start another: it waits for them, removes the stale lock, and loads a working kernel."""
    builder = subprocess.Popen(
        [sys.executable, "-c", LOAD], env=child_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        baton = None
        while baton is None and time.monotonic() < deadline and builder.poll() is None:
            found = list(tmp_path.glob(f"sparse_rational_cpu_*/{cpu._BATON}"))
            baton = found[0] if found else None
            time.sleep(0.05)
        if baton is None:
            pytest.skip(f"the build did not start or finished too fast (exit {builder.poll()})")
        time.sleep(1.0)  # the compiler is running now
    finally:
        os.kill(builder.pid, signal.SIGKILL)
        builder.communicate()
    assert baton.exists()  # what used to make every later process hang
    code = LOAD + (
        "import torch\n"
        "x, w, v = torch.randn(5, 2, 3), torch.randn(3, 4), torch.randn(3, 4)\n"
        "first = torch.tensor([True, False, True, False])\n"
        "from sparse_rational.ops import rational_forward_ref\n"
        "torch.testing.assert_close(c.rational_forward_cpp(x, w, v, torch.zeros(4), first),\n"
        "                           rational_forward_ref(x, w, v, torch.zeros(4), first))\n"
        "print('agrees')\n"
    )
    proc, _ = run_child(code, tmp_path, timeout=BUILD_TIMEOUT)
    assert proc.stdout.split() == ["loaded", "agrees"], proc.stderr
    assert stderr_lines(proc) == [f"sparse-rational: removed a stale build lock left by an interrupted build: {baton}"]
    assert not baton.exists()


# --- the cache key ---------------------------------------------------------------------


def fake_torch(root: Path) -> Path:
    lib = root / "torch" / "lib" / "libtorch_cpu.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\0" * 16)
    return root / "torch" / "__init__.py"


def test_build_tag_is_keyed_to_the_torch_installation(monkeypatch, tmp_path):
    flags = ["-O3", "-fopenmp"]
    here = cpu._build_tag(flags)
    assert cpu._build_tag(flags) == here  # stable
    assert cpu._build_tag(flags + ["-g"]) != here

    first, second = fake_torch(tmp_path / "venv1"), fake_torch(tmp_path / "venv2")
    monkeypatch.setattr(torch, "__file__", str(first))
    tag1 = cpu._build_tag(flags)
    assert tag1 != here and cpu._build_tag(flags) == tag1
    monkeypatch.setattr(torch, "__file__", str(second))  # same version, another installation
    tag2 = cpu._build_tag(flags)
    assert tag2 not in (here, tag1)

    link = tmp_path / "link"  # the same installation through a symlink: the same build
    link.symlink_to(tmp_path / "venv2", target_is_directory=True)
    monkeypatch.setattr(torch, "__file__", str(link / "torch" / "__init__.py"))
    assert cpu._build_tag(flags) == tag2

    lib = second.parent / "lib" / "libtorch_cpu.so"  # torch reinstalled in place
    os.utime(lib, ns=(0, lib.stat().st_mtime_ns + 10**9))
    assert cpu._build_tag(flags) != tag2

    monkeypatch.setattr(torch.version, "git_version", "another-build")
    tag3 = cpu._build_tag(flags)
    monkeypatch.undo()
    assert tag3 != tag2
    assert cpu._build_tag(flags) == here


def test_build_wait_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(cpu.WAIT_ENV_VAR, raising=False)
    assert cpu._build_wait() == cpu.DEFAULT_WAIT == 120
    monkeypatch.setenv(cpu.WAIT_ENV_VAR, "2.5")
    assert cpu._build_wait() == 2.5
    monkeypatch.setenv(cpu.WAIT_ENV_VAR, "soon")
    with pytest.raises(ValueError, match=cpu.WAIT_ENV_VAR):  # reported as the build error
        cpu._build_wait()


# --- SPARSE_RATIONAL_IMPL --------------------------------------------------------------


def test_unknown_impl_in_the_environment_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "bogus")
    with pytest.raises(UserError) as info:
        ops.choose_impl(torch.zeros(2, 1, 3))
    message = str(info.value)
    assert "\n" not in message
    assert "SPARSE_RATIONAL_IMPL='bogus'" in message
    for name in ("auto", "scan", "reference"):
        assert name in message
    assert isinstance(info.value, ValueError)  # callers that catch ValueError still do


def test_cli_with_unknown_impl_exits_2_with_one_line(monkeypatch, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"pos\tgood great thing {i}\nneg\tbad awful thing {i}\n" for i in range(10)))
    vectors = tmp_path / "vectors.txt"  # a tiny GloVe-format file: no 400k-word load
    words = ["good", "great", "bad", "awful", "thing"]
    vectors.write_text("".join(f"{w} {i / 10} {-i / 10} 0.5\n" for i, w in enumerate(words)))
    monkeypatch.setenv(ops.ENV_VAR, "bogus")
    code = main(
        [
            "train",
            "--train",
            str(train),
            "--embeddings",
            str(vectors),
            "--patterns",
            "2x1",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "model"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sparse-rational: error:") and "SPARSE_RATIONAL_IMPL" in lines[0]
