"""The command line's entry point (``sparse_rational/__main__.py``): ``predict`` asks
numpy's OpenBLAS for one thread before numpy is imported, unless the user chose a count;
``python -m sparse_rational`` runs the same command line as the ``sparse-rational`` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_rational.__main__ import BLAS_THREAD_VARIABLES, command_of, keep_batch_memory, limit_blas_threads

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), **extra}


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["predict", "--model", "m"], "predict"),
        (["-v", "train", "--out", "x"], "train"),
        ([], None),
        (["--help"], None),
    ],
)
def test_command_of(argv, command):
    assert command_of(argv) == command


def test_predict_asks_for_one_thread_and_other_commands_do_not():
    env: dict[str, str] = {}
    assert limit_blas_threads(["predict", "--model", "m", "docs.txt"], env)
    assert env == {"OPENBLAS_NUM_THREADS": "1"}
    for argv in (["train", "--out", "x"], ["reproduce"], ["evaluate"], []):
        env = {}
        assert not limit_blas_threads(argv, env)
        assert env == {}


@pytest.mark.parametrize("name", BLAS_THREAD_VARIABLES)
def test_a_thread_count_the_user_chose_is_kept(name):
    env = {name: "2"}
    assert not limit_blas_threads(["predict", "--model", "m"], env)
    assert env == {name: "2"}


def test_the_entry_point_imports_no_numpy():
    """The variable acts only if numpy is imported after it is set."""
    code = "import sys, sparse_rational.__main__; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts one thread on one core anyway")
@pytest.mark.parametrize(("argv", "threads"), [(["predict"], 1), (["train"], None)])
def test_openblas_runs_the_threads_asked_for(argv, threads):
    pytest.importorskip("threadpoolctl")
    code = (
        "import sys; from sparse_rational.__main__ import limit_blas_threads; "
        f"limit_blas_threads({argv!r}); import numpy, threadpoolctl; "
        "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    if threads is None:
        assert int(out.stdout) > 1  # numpy's default: the cores; so the check above can fail
    else:
        assert int(out.stdout) == threads


def test_python_m_sparse_rational_predicts_as_the_cli_module(baseline, kitchen):
    texts = "".join(" ".join(ex.text.split()) + "\n" for ex in kitchen.test[:50])
    outputs = []
    for module in ("sparse_rational", "sparse_rational.cli"):
        run = subprocess.run(
            [sys.executable, "-m", module, "predict", "--model", str(baseline), "-"],
            input=texts,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert len([json.loads(line) for line in outputs[0].splitlines()]) == 50


FAULTS = """
import resource, sys
from sparse_rational.__main__ import keep_batch_memory
keep_batch_memory(sys.argv[1:])
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(20):
    batch = [bytearray(4 << 20) for _ in range(6)]  # a batch's arrays: zeroed, every page touched
    del batch
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_predict_keeps_a_batchs_memory_for_the_next_batch():
    """20 batches of six 4 MiB arrays, allocated and freed in turn: each batch's memory given
    back to the kernel and mapped again (~6,000 page faults a batch) unless freed memory is
    kept, as predict asks."""

    def faults(command: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, command], env=_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert faults("predict") < 15000 < 60000 < faults("train")
    assert not keep_batch_memory(["train", "--out", "x"]) and not keep_batch_memory([])


PARSE_ONE = """
import sys
from sparse_rational.cli import build_parser
args = build_parser(sys.argv[1]).parse_args([sys.argv[1], *sys.argv[2:]])
print(args.command, sorted(m for m in sys.modules if m.split(".")[0] in ("sparse_rational", "torch")))
"""


@pytest.mark.parametrize(
    ("argv", "imported"),
    [
        (["predict", "--model", "m", "in.txt"], set()),
        (["reproduce", "--dry-run", "--out", "x"], {"sparse_rational.experiments.cli"}),
        (["serve", "--model", "m"], {"sparse_rational.web.cli"}),
        (["explain", "--model", "m"], {"sparse_rational.explain.cli"}),
    ],
)
def test_a_command_builds_and_imports_its_own_parser_only(argv, imported):
    """``predict`` does not build ``train``'s options nor import the modules of ``reproduce``,
    ``serve``/``demo`` and ``explain`` (start-up); each of those imports its own; none imports torch."""
    out = subprocess.run([sys.executable, "-c", PARSE_ONE, *argv], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    command, modules = out.stdout.split(" ", 1)
    loaded = set(eval(modules))
    assert command == argv[0]
    others = {"sparse_rational.experiments.cli", "sparse_rational.web.cli", "sparse_rational.explain.cli"}
    assert loaded & others == imported and not any(m.split(".")[0] == "torch" for m in loaded)


def test_every_command_still_answers_help():
    for command in ("train", "evaluate", "predict", "export", "explain", "reproduce", "demo", "serve"):
        out = subprocess.run(
            [sys.executable, "-m", "sparse_rational", command, "--help"], env=_env(), capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout.startswith(f"usage: sparse-rational {command}"), out.stderr


RUN_ONE = """
import sys
from sparse_rational.cli import main
code = main(sys.argv[1:])
print(code, 'torch' in sys.modules)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "{m}", "in.txt"],
        ["evaluate", "--model", "{m}", "--dataset", "amazon:kitchen"],
        ["export", "--model", "{m}", "--out", "{tmp}/x.json"],
        ["explain", "--model", "{m}", "--dataset", "amazon:kitchen"],
        ["demo", "--model", "{m}", "--out", "{tmp}/page.html"],
        ["serve", "--model", "{m}"],
    ],
)
def test_a_folder_that_is_no_model_is_one_line_before_torch_loads(argv, tmp_path):
    """A typo in ``--model`` is said at once (exit 2), naming the folder and what it lacks,
    without the second that importing PyTorch takes."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")  # a folder, but no model in it
    for folder, said in ((tmp_path / "missing", ": not a model folder"), (tmp_path / "notes", "missing")):
        args = [a.format(m=folder, tmp=tmp_path) for a in argv]
        out = subprocess.run([sys.executable, "-c", RUN_ONE, *args], env=_env(), capture_output=True, text=True)
        assert out.stdout.split() == ["2", "False"], out.stderr
        assert out.stderr.count("\n") == 1 and said in out.stderr and str(folder) in out.stderr
