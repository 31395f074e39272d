"""``deepwide models params / budget / list`` through the root CLI."""

from __future__ import annotations

import re
import subprocess
import sys

from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import ConfigError, UnknownNameError


def _run(*args: str):
    return CliRunner().invoke(cli, ["models", *args])


def test_params_prints_published_counts():
    result = _run("params", "distilhubert", "3l-one", "12l-half", "hubert-base")
    assert result.exit_code == 0, result.output
    counts = re.findall(r"^(\S+)\s+([\d.]+) M", result.output, flags=re.M)
    assert counts == [("distilhubert", "23.49"), ("3l-one", "30.58"), ("12l-half", "26.87"), ("hubert-base", "94.37")]


def test_budget_table():
    result = _run("budget", "--params", "26.9M", "--depths", "2,3,4,6,8,12")
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+) M\s+([+-][\d.]+)%$", result.output, flags=re.M)
    assert [int(r[0]) for r in rows] == [2, 3, 4, 6, 8, 12]
    twelve = rows[-1]
    assert twelve[1:5] == ("384", "1536", "6", "26.87")
    assert all(abs(float(r[5])) < 10 for r in rows)


def test_budget_options():
    result = _run("budget", "--params", "5M", "--depths", "2,4", "--ffn-ratio", "2", "--head-dim", "32", "--template", "distilhubert")
    assert result.exit_code == 0, result.output
    widths = [int(m) for m in re.findall(r"^\s*[24]\s+(\d+)", result.output, flags=re.M)]
    assert len(widths) == 2 and all(w % 32 == 0 for w in widths)


def test_bad_input_raises_user_errors():
    result = _run("params", "no-such-model")
    # the root group turns user errors into one "Error: …" line and exit code 2
    assert result.exit_code == UnknownNameError.exit_code
    assert result.output.startswith("Error: unknown model") and "distilhubert" in result.output
    result = _run("budget", "--params", "lots")
    assert result.exit_code == ConfigError.exit_code and result.output.startswith("Error:")
    result = _run("budget", "--params", "1M", "--depths", "2,x")
    assert result.exit_code == ConfigError.exit_code and result.output.startswith("Error:")


def test_list_without_torchaudio():
    result = _run("list", "--no-torchaudio")
    assert result.exit_code == 0, result.output
    for name in ("hubert-base", "fithubert", "tiny-teacher", "random:SPEC"):
        assert name in result.output


def test_console_entry_point_one_line_error_and_no_torch_for_params():
    code = (
        "import sys\n"
        "from deepwide.cli import main\n"
        "try:\n"
        "    main(['models', 'params', 'distilhubert'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'torch' not in sys.modules, 'params imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "23.49 M" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "deepwide", "models", "params", "nope"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("Error: unknown model")
