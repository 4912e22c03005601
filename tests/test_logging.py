"""The library logs through `logging` (silenced, it writes nothing on stderr); the command line
keeps its output, and --quiet / --verbose set the level."""

import logging
import subprocess
import sys

import pytest
from conftest import FAST, tiny_args

from sparse_rational.cli import build_parser, main
from sparse_rational.log import get_logger, set_verbosity, use_default_handler, use_own_handlers


@pytest.fixture(autouse=True)
def _restore_level():
    yield
    use_default_handler()
    set_verbosity("info")


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import sparse_rational
from conftest import balanced
from sparse_rational.data import load_dataset, Splits
from sparse_rational.config import RunOptions, ModelOptions, TrainConfig
{silence}
k = load_dataset("amazon:kitchen", {data!r}, 0)
splits = Splits(balanced(k.train, 40) + [k.train[0].__class__("   ", "positive")], balanced(k.dev, 10), [])
options = RunOptions("glove-6b-50d", ModelOptions(patterns="2x1"), TrainConfig(epochs=2))
sparse_rational.train_text_classifier(splits, options=options, verbose=True)
sparse_rational.train_text_classifier([("good", "a"), ("bad", "b")] * 3, options=options, verbose=True)
"""


def _run(silence: str, data_dir) -> subprocess.CompletedProcess:
    from conftest import REPO

    code = SCRIPT.format(tests=str(REPO / "tests"), data=str(data_dir), silence=silence)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_silenced_library_writes_nothing_on_stderr(data_dir):
    loud = _run("", data_dir)
    assert loud.returncode == 0, loud.stderr
    assert "train epoch   1" in loud.stderr and "data: " in loud.stderr  # the default: progress lines
    assert "sparse-rational: warning:" in loud.stderr  # the carved dev set of 6 pairs is tiny
    quiet = _run('sparse_rational.set_verbosity("error")', data_dir)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == ""
    also_quiet = _run('import logging; logging.getLogger("sparse_rational").setLevel(logging.CRITICAL)', data_dir)
    assert also_quiet.returncode == 0 and also_quiet.stderr == ""


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_records_reach_the_applications_handlers(capsys):
    app = _Collect()
    logging.getLogger().addHandler(app)
    try:
        log = get_logger("sparse_rational.train")
        log.info("default handler")
        assert capsys.readouterr().err == "default handler\n"
        assert app.messages == []  # the package's own handler, no propagation
        use_own_handlers()
        log.warning("to the root logger")
        assert capsys.readouterr().err == ""  # not on our stderr handler any more
        assert app.messages == ["to the root logger"]
    finally:
        logging.getLogger().removeHandler(app)
    with pytest.raises(ValueError, match="verbosity 'loud'"):
        set_verbosity("loud")


def test_cli_output_and_verbosity_flags(tiny_files, tmp_path, capsys):
    base = ["train", *tiny_args(tiny_files), "--patterns", "2x1", *[a for a in FAST if a != "--quiet"]]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    loud = capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert logging.getLogger("sparse_rational").level == logging.INFO  # main() restores the level it found
    assert "train epoch   1 of at most 3  loss" in loud.err and "data: 160 train / 40 dev / 40 test" in loud.err
    assert "pairs:" not in loud.err  # --negation-pairs auto: none for 160 texts
    assert "epoch" not in quiet.err and "data:" not in quiet.err
    # stdout is the same report, whatever the level (timings aside)
    first = [line.split(";")[0] for line in loud.out.splitlines()]
    assert first == [line.split(";")[0] for line in quiet.out.splitlines()][:-1] + [f"saved {tmp_path / 'a'}"]
    assert first[0].startswith("dev accuracy ")
    for command in ("evaluate", "predict", "export", "explain", "reproduce"):
        args = build_parser().parse_args(_minimal(command) + ["--verbose"])
        assert args.verbose and not getattr(args, "quiet", False)
    with pytest.raises(Exception, match="not allowed with argument"):
        build_parser().parse_args([*_minimal("predict"), "--quiet", "--verbose"])


def _minimal(command):
    return {
        "evaluate": ["evaluate", "--model", "m"],
        "predict": ["predict", "--model", "m"],
        "export": ["export", "--model", "m", "--out", "x.json"],
        "explain": ["explain", "--model", "m", "--dataset", "amazon:kitchen"],
        "reproduce": ["reproduce", "--out", "o"],
    }[command]
