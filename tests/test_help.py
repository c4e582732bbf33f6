"""``harness --help``, ``harness run -h``, ``harness worker -h`` and ``--version``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from rich.cells import cell_len

from harness import __version__
from harness.environment import vllm_version
from harness.options import RunOptions, WorkerOptions, _fields, flag_of

ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns), "TERM": "dumb"}
    env.pop("TERMINAL_WIDTH", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=env)  # fmt: skip


def flat(text: str) -> str:
    """The text with its layout gone: panels' borders, line breaks and indents."""
    return " ".join(text.replace("│", " ").split())


def test_root_help_lists_every_command():
    proc = harness("--help")
    assert proc.returncode == 0, proc.stderr
    for cmd in ("run", "worker", "report", "compare", "tiny-model"):
        assert f" {cmd} " in proc.stdout
    assert "--version" in proc.stdout


@pytest.mark.parametrize(("command", "struct"), [("run", RunOptions), ("worker", WorkerOptions)])
def test_every_option_has_its_help_in_80_columns(command, struct):
    proc = harness(command, "-h", columns=80)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == harness(command, "--help", columns=80).stdout
    lines = proc.stdout.splitlines()
    assert max(map(cell_len, lines)) <= 80
    text = flat(proc.stdout)
    for name, _typ, _default, extra, help_text in _fields(struct):
        if extra.get("hidden"):
            assert flag_of(name, extra).split("/")[0] not in text
            continue
        assert help_text and len(help_text) > 10, name  # every option says what it does
        head = flag_of(name, extra)
        if extra.get("metavar"):
            head += f" {extra['metavar']}"
        assert head in text, name  # its name, whole, and what it takes
        assert flat(help_text) in text, name


@pytest.mark.parametrize("command", ["run", "worker"])
def test_wide_terminals_get_typers_table_with_every_option(command):
    proc = harness(command, "--help", columns=200)
    assert proc.returncode == 0, proc.stderr
    struct = RunOptions if command == "run" else WorkerOptions
    for name, _typ, _default, extra, _help in _fields(struct):
        if not extra.get("hidden"):
            assert flag_of(name, extra).split("/")[0] in proc.stdout, name
    flat = "".join(ln.strip("│ ") for ln in proc.stdout.splitlines()).replace(" ", "")  # help wraps
    assert "[default:results/runs/<run-id>.json]" in flat or command == "worker"


def test_every_option_that_takes_a_value_names_it():
    for struct in (RunOptions, WorkerOptions):
        for name, typ, _default, extra, _help in _fields(struct):
            if typ not in (bool, Optional[bool]):  # flags take no value
                assert extra.get("metavar") or extra.get("hidden"), name


def test_run_help_states_the_fixed_sampling_settings():
    text = flat(harness("run", "-h").stdout)
    assert "ignore_eos=True" in text and "detokenize=False" in text


def test_version_prints_the_harness_and_vllm_versions():
    proc = harness("--version")
    assert proc.returncode == 0
    from workers.vllm_compat import SUPPORTED_VLLM

    line = proc.stdout.strip()
    assert line.startswith(f"vllm-harness {__version__}; vLLM {vllm_version() or 'not installed'}")
    assert SUPPORTED_VLLM in line  # and the range this harness supports
