"""CLI plumbing: help, version, selftest, and one-line errors with a non-zero exit for user mistakes."""

import subprocess
import sys

import numpy as np

from numpynst.cli import main
from numpynst.commands.selftest import TOL, layer_checks


def test_selftest_errors_are_tiny():
    results = layer_checks(np)
    assert len(results) == 9
    assert all(err < TOL for _, err in results), results


def test_selftest_command_exits_zero(capsys):
    assert main(["selftest"]) == 0
    assert "all gradients agree" in capsys.readouterr().out


def test_unavailable_backend_is_one_line_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "numpynst", "selftest", "--backend", "cupy"],
                          capture_output=True, text=True)
    from numpynst.backend import cupy_available
    if cupy_available()[0]:
        assert proc.returncode == 0
        return
    assert proc.returncode == 2
    assert proc.stderr.startswith("numpynst: error: backend 'cupy' is unavailable")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
