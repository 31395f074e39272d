"""One grammar for index lists, count lists, number lists and parameter counts (deepwide.params)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import ConfigError
from deepwide.params import (
    INDEX_LIST,
    parse_count_list,
    parse_index_list,
    parse_number_list,
    parse_param_count,
)


def test_index_lists() -> None:
    for text in ("all", "ALL", "", " ", None):
        assert parse_index_list(text) is None
    assert parse_index_list("0,4,8") == (0, 4, 8)
    assert parse_index_list("8,4,0") == (8, 4, 0)  # the order written
    assert parse_index_list(" 0-3, 6") == (0, 1, 2, 3, 6)
    assert parse_index_list("0-12:4") == tuple(range(0, 13, 4))
    for bad, why in (("a", "not valid"), ("-1", "not valid"), ("4,x", "not valid"), ("3-1", "reversed"),
                     ("0-4:0", "step 0"), ("1,1", "twice"), ("0-4,2", "twice")):
        with pytest.raises(ConfigError, match=why):
            parse_index_list(bad, "--layers")


def test_count_and_number_lists() -> None:
    assert parse_count_list("2,3,6,12") == (2, 3, 6, 12)
    assert parse_count_list("2-4") == (2, 3, 4)
    for bad in ("2,0", "", "all", "x"):
        with pytest.raises(ConfigError):
            parse_count_list(bad, "--depths")
    assert parse_number_list("1,0.1,1e-3") == (1.0, 0.1, 1e-3)
    for bad in ("1,x", "0", "-1", "", "inf"):
        with pytest.raises(ConfigError):
            parse_number_list(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [("27M", 27_000_000), ("26.9m", 26_900_000), ("500k", 500_000), ("1.2G", 1_200_000_000), ("900", 900),
     ("26_900_000", 26_900_000), ("2.69e7", 26_900_000)],
)
def test_param_counts(text: str, value: int) -> None:
    assert parse_param_count(text) == value


def test_click_type_names_the_option_and_passes_parsed_values() -> None:
    @click.command()
    @click.option("--layers", type=INDEX_LIST, default="all")
    def show(layers: tuple[int, ...] | None) -> None:
        click.echo(repr(layers))

    runner = CliRunner()
    assert runner.invoke(show, []).output.strip() == "None"
    assert runner.invoke(show, ["--layers", "0-2"]).output.strip() == "(0, 1, 2)"
    res = runner.invoke(show, ["--layers", "1,1"])
    assert isinstance(res.exception, ConfigError) and "--layers '1,1' names an index twice" in str(res.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["models", "budget", "--params", "lots"], "cannot read --params 'lots'"),
     (["models", "budget", "--params", "3M", "--depths", "2,0"], "--depths '2,0' must list positive integers"),
     (["extract", "--model", "mfcc", "--corpus", "synth", "--out", "x", "--layers", "3-1"], "--layers range '3-1' is reversed")],
)
def test_cli_errors_are_one_line(args: list[str], message: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and message in res.output
    assert res.output.strip().count("\n") == 0 and not list(tmp_path.iterdir())
