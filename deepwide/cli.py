"""The ``deepwide`` command: a root group that owns ``--seed`` and logging and mounts each
stage's own click group lazily (so ``deepwide --help`` does not import torch).

Each stage module parses its options and hands off to a library function; no logic lives in
a CLI function. Errors a user can cause (:class:`deepwide.errors.DeepwideError`) print on one
line and exit non-zero; ``-v`` shows the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass

import click

from deepwide import __version__
from deepwide.errors import DeepwideError
from deepwide.logging_setup import configure_logging
from deepwide.system import prefer_sleeping_openmp_threads, reuse_freed_memory

prefer_sleeping_openmp_threads()  # before any stage imports torch (see its docstring)
reuse_freed_memory()  # large freed blocks stay in the heap (probe solvers: no page faults per step)

log = logging.getLogger(__name__)

#: command name -> "module:attribute" of its click command/group, in help order.
STAGE_COMMANDS: dict[str, str] = {
    "corpus": "deepwide.corpora.cli:corpus",
    "models": "deepwide.models.cli:models",
    "teacher": "deepwide.models.teacher_cli:teacher",
    "distill": "deepwide.distill.cli:distill",
    "export": "deepwide.models.export_cli:export",
    "extract": "deepwide.extract.cli:extract",
    "store": "deepwide.extract.cli:store",
    "probe": "deepwide.probing.cli:probe",
    "analyze": "deepwide.analysis.cli:analyze",
    "figures": "deepwide.figures.cli:figures",
    "report": "deepwide.figures.cli:report",
    "study": "deepwide.study.cli:study",
}


@dataclass
class CliState:
    """What the root group hands to every subcommand through ``ctx.obj``."""

    seed: int = 0
    verbosity: int = 0


class UserError(click.ClickException):
    """A :class:`DeepwideError` shown by click as one ``Error: …`` line, with its exit code."""

    def __init__(self, exc: DeepwideError) -> None:
        super().__init__(str(exc))
        self.exit_code = exc.exit_code


class StageGroup(click.Group):
    """A group whose subcommands are imported on first use, from :data:`STAGE_COMMANDS`.

    It also turns every :class:`DeepwideError` raised below it into a one-line
    :class:`UserError` (non-zero exit, no traceback) unless ``-v`` was given, so stage
    commands need no error handling of their own.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeepwideError as exc:
            if _STATE.verbosity > 0:
                raise
            raise UserError(exc) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, target in STAGE_COMMANDS.items() if _module_exists(target)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = STAGE_COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


def _module_exists(target: str) -> bool:
    module_name = target.split(":")[0]
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="deepwide")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")
@click.option("-v", "--verbose", count=True, help="More logging; -v also shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def cli(ctx: click.Context, seed: int, verbose: int, quiet: bool) -> None:
    """deepwide: distil HuBERT-style speech models into deep or wide students, cache every
    layer, and explain what each student kept with probes and representation similarity.

    Start with `deepwide study` (the whole embedded study on a laptop), or run the stages:
    corpus → teacher/distill → extract → probe/analyze → figures/report.
    """
    verbosity = -1 if quiet else verbose
    configure_logging(verbosity)
    _STATE.verbosity = verbosity
    ctx.obj = CliState(seed=seed, verbosity=verbosity)


_STATE = CliState()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs :func:`cli` and turns user errors into one line."""
    try:
        rv = cli.main(args=argv, prog_name="deepwide", standalone_mode=False)
    except DeepwideError as exc:
        if _STATE.verbosity > 0:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
