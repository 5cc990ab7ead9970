"""The `ml-project` command's shared parts: the app, its options, its errors, its logging and settings.

Hand-written (not exported from a notebook): the command line only parses and prints; every stage it runs is a function
of a notebook. The commands are in `lifecycle.py` (train, evaluate, predict, run, tune, data, infer-schema, init-config)
and `operations.py` (serve, monitor, keys, services); `ml_project.cli.app` is the console entry point.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


ISSUES = "https://github.com/ml-project/ml-project/issues"  # pyproject's [project.urls] Repository


class _App(typer.Typer):
    """The command: a problem the user can fix (an `MLProjectError`) is one line and exit code 1, printed where it is
    caught; anything else is a bug, shown with its traceback and a line asking to report it."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the last resort: a bug, never a user's mistake
            import traceback

            traceback.print_exc()
            typer.secho(
                f"ml-project {_package_version()} hit a bug (the traceback above). Please report it, with the command "
                f"you ran, at {ISSUES}",
                fg=typer.colors.RED,
                err=True,
            )
            sys.exit(70)  # EX_SOFTWARE: an internal error


def _package_version() -> str:
    from ml_project import __version__

    return __version__


def _project_errors():
    "What a command catches and prints as one line: the project's own errors, named in `ml_project.errors`."
    from ml_project.errors import MLProjectError

    return MLProjectError


app = _App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, evaluate and manage ml-project experiments. Settings come from settings.ini and ML_PROJECT_* variables.",
)


class Mode(str, Enum):
    careful = "careful"
    fast = "fast"


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Experiment config (YAML), e.g. configs/experiment_001.yaml")
]
ModeOption = Annotated[
    Mode | None,
    typer.Option("--mode", "-m", help="careful: full data and folds; fast: a small sample. Default: settings.ini"),
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config value: dotted.key=value (repeatable)")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only warnings and the results, not the stages as they go")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also what the libraries said (MLflow's warnings and messages)")
]


def _version(value: bool):
    if value:
        from ml_project import __version__

        typer.echo(f"ml-project {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
):
    "Train, evaluate and manage ml-project experiments. Settings come from settings.ini and ML_PROJECT_* variables."
    try:  # `kill -USR1 <pid>` prints where a stuck command is (not on Windows, nor without a real stderr)
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (AttributeError, ValueError, OSError):
        pass


class _Stderr(logging.StreamHandler):
    "A handler writing to whatever `sys.stderr` is when a message comes (a test runner swaps it per command)."

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Elapsed(logging.Formatter):
    "Each stage line led by the seconds since the command started: the gap to the next line is the stage's time."

    def __init__(self):
        super().__init__("%(message)s")
        self.started = time.monotonic()

    def format(self, record):
        return f"{time.monotonic() - self.started:7.1f}s  {super().format(record)}"


def _setup(mode: Mode | None, quiet: bool = False, verbose: bool = False):
    "Logging to stderr (the stages as they go, unless quiet; with verbose also what libraries said), SIGTERM handled as Ctrl-C, and the settings."
    ours = logging.getLogger("ml_project")
    if not any(isinstance(h, _Stderr) for h in ours.handlers):
        handler = _Stderr()
        handler.setFormatter(_Elapsed())
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    for handler in ours.handlers:  # the clock starts with each command (a test runner runs many in one process)
        if isinstance(handler.formatter, _Elapsed):
            handler.formatter.started = time.monotonic()
    for noisy in ("papermill", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # With a tracking server MLflow prints two links per run it closes: a tuning run's trials would flood the output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from ml_project.errors import interrupted
    from ml_project.settings import get_settings

    signal.signal(signal.SIGTERM, interrupted)  # `kill <pid>` stops a run as Ctrl-C does: its run is closed as KILLED

    return get_settings(**({"mode": mode.value} if mode else {}))


ModelArgument = Annotated[
    str,
    typer.Option(
        "--model",
        help="A saved model (models/churn_xgboost) or a registered one: churn (its champion), churn@challenger, churn:3",
    ),
]


INTERRUPTED = "interrupted: the MLflow run was closed as KILLED; nothing was saved to models/ or registered"
