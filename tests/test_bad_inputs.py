"""The bad-input corpus (tests/bad_inputs.py) through every script: exit code, one-line message,
no traceback, nothing written for a bad input, every output for the good ones.

The default run calls each script's ``main`` through :func:`common.cli.run_main` in this process
(what the script's ``__main__`` does, without paying a torch import per case); ``-m slow`` runs
the same cases as subprocesses. ``BAD_INPUT_TABLE=table.md`` appends one table row per case.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from common.cli import run_main
from tests import bad_inputs as corpus
from tests.conftest import ROOT, run_script

CASES = corpus.cases()
ONE_LINE = re.compile(r"^\S[^\n]*: \S[^\n]*$")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    made = {}
    for name, make in (("infer", corpus.make_infer_folder), ("train", corpus.make_train_folder),
                       ("raw", corpus.make_raw_folder), ("feat", corpus.make_feature_folder)):  # fmt: skip
        (base / name).mkdir()
        make(base / name)
        made[name] = base / name
    return made


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith((".log", ".lock")) or f == "githash" or "events.out" in f:
                continue
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def invoke(case: corpus.Case, cwd: Path, mode: str, capfd, monkeypatch) -> tuple[int, str, str]:
    args = [str(a) for a in case.args]
    if mode == "subprocess":
        if case.script == "inference.merge":
            cmd = ["-m", "inference.merge", *args]
        else:
            cmd = [ROOT / case.script, *args]
        proc = run_script(cmd, cwd=cwd, check=False, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr
    monkeypatch.chdir(cwd)
    root = logging.getLogger()
    for h in list(root.handlers):  # train.py's handlers from an earlier case write to old streams
        if type(h) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(h)
    main = importlib.import_module(corpus.SCRIPTS[case.script]).main
    capfd.readouterr()
    # what a fresh process does with warnings when nothing configured logging (lastResort)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        rc = run_main(main, args)
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    return rc, out, err


def run_case(case: corpus.Case, folders, mode, capfd, monkeypatch) -> None:
    cwd = folders[case.where]
    if case.setup is not None:
        case.setup(cwd)
    before = snapshot(cwd)
    rc, out, err = invoke(case, cwd, mode, capfd, monkeypatch)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    shown = f"rc {rc}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert "Traceback" not in out + err, shown
    assert not (cwd / "PWNED").exists()
    assert rc == case.rc, shown
    if rc != 0:
        assert ONE_LINE.match(last), shown
        assert case.says in last, shown
        if case.unchanged:
            assert snapshot(cwd) == before, "a failed run changed files"
    else:
        assert case.says in err + out, shown
    if case.check is not None:
        case.check(cwd, out + err)
    table = os.environ.get("BAD_INPUT_TABLE")
    if table:  # one row per case: kind | script | mode | exit code | message
        path = Path(table)
        if not path.exists():
            path.write_text(
                "| kind | script | run | exit | message (last line) |\n|---|---|---|---|---|\n"
            )
        msg = (last if rc else case.says).replace("|", "/")
        with open(path, "a") as f:
            f.write(f"| {case.kind} | {case.script} | {mode} | {rc} | `{msg}` |\n")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case, folders, capfd, monkeypatch):
    run_case(case, folders, "inprocess", capfd, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_subprocess(case, folders, capfd, monkeypatch):
    run_case(case, folders, "subprocess", capfd, monkeypatch)


def test_corpus_is_large_enough():
    assert len({c.kind for c in CASES}) >= 25
    assert {c.script for c in CASES} == set(corpus.SCRIPTS)


def test_every_script_ends_through_run_main():
    """The in-process corpus is only as good as this: each script's __main__ calls run_main."""
    files = ["inference_main.py", "compress_model.py", "inference/merge.py", "train.py",
             "resample.py", "preprocess_flist_config.py", "preprocess_hubert_f0.py",
             "cluster/train_cluster.py", "train_index.py"]  # fmt: skip
    for f in files:
        assert "sys.exit(run_main(main))" in (ROOT / f).read_text(), f


def test_debug_flag_shows_the_traceback(folders, capfd, monkeypatch):
    from inference.cli import main

    monkeypatch.chdir(folders["infer"])
    with pytest.raises(Exception, match="does not fit"):
        run_main(main, ["-m", "bad/G_other.pth", "-c", corpus.C, *corpus.CONVERT, "--debug"])


@pytest.mark.slow  # the default run covers the same four scripts in-process (CASES)
def test_foreign_checkpoint_leaves_outputs_untouched_subprocess(folders, tmp_path):
    """Acceptance: a checkpoint of another config given to inference_main.py, train.py (resume),
    compress_model.py and inference.merge fails with one line and changes no existing output."""
    infer, train = folders["infer"], folders["train"]
    runs = [
        (infer, [ROOT / "inference_main.py", "-m", "bad/G_other.pth", "-c", corpus.C, "-n", "song.wav",
                 "-s", "alto"]),
        (train, [ROOT / "train.py", "-c", "configs/config.json", "-m", "44k", "--max_steps", "1"]),
        (infer, [ROOT / "compress_model.py", "-c", corpus.C, "-i", "bad/G_other.pth", "-o", corpus.G]),
        (infer, ["-m", "inference.merge", corpus.G, "bad/G_other.pth", "-o", corpus.G]),
    ]  # fmt: skip
    # an existing conversion result that must survive
    (infer / "results").mkdir(exist_ok=True)
    shutil.copy(infer / "raw" / "song.wav", infer / "results" / "song.wav_0key_alto_sovits_pm.flac")
    for cwd, cmd in runs:
        before = snapshot(cwd)
        proc = run_script(cmd, cwd=cwd, check=False, timeout=300)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert (
            ONE_LINE.match(err[-1])
            and "does not fit the model built from" in err[-1]
            or ("does not fit" in err[-1])
        ), err[-1]
        assert snapshot(cwd) == before
