"""The project's own errors: each is a mistake a user can fix, and its message says what is wrong and where.

Hand-written (not exported from a notebook): every stage raises these, so they sit below every stage; their tests are in
`tests/test_errors.py`.

`ml-project` prints the message of an `MLProjectError` as one line (`error: ...`, exit code 2). Any other exception is a
bug of ours or of a library: the command shows its traceback and asks for a report. Each error also keeps the built-in
type it has always been (`ConfigError` is a `ValueError`, `RawDataError` a `RuntimeError`), so code that caught those
still does.
"""

from __future__ import annotations

__all__ = [
    "MLProjectError",
    "ConfigError",
    "RawDataError",
    "DataValidationError",
    "InputError",
    "PredictionInputError",
    "NothingToMonitor",
    "ModelReferenceError",
    "ModelIntegrityError",
    "ServiceError",
    "interrupted",
]


class MLProjectError(Exception):
    "A problem the user can fix; its message names what is wrong (the command line prints it alone)."


class ConfigError(MLProjectError, ValueError):
    "A settings or experiment config problem, with a message that names the key and the file."


class RawDataError(MLProjectError, RuntimeError):
    "A raw data file is missing, changed since it was recorded, or cannot be fetched."


class DataValidationError(MLProjectError, ValueError):
    "Raw data does not match its declared schema, or lacks what the config asks of it."


class InputError(MLProjectError, ValueError):
    "A file or table given to a command (rows to score, labels, a prediction log) is not what the command needs."


class PredictionInputError(InputError):
    "Rows that cannot be scored; `problems` lists each one as {row, field, error}."

    def __init__(
        self,
        problems: list[dict],  # each problem as {row, field, error}
    ):
        self.problems = problems
        shown = "; ".join(
            f"row {p['row']}: '{p['field']}' {p['error']}" if p["row"] is not None else f"'{p['field']}' {p['error']}"
            for p in problems[:10]
        )
        super().__init__(
            f"{len(problems)} problem(s) in the input: {shown}"
            + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        )


class NothingToMonitor(InputError):
    "The model has no rows to monitor yet (a champion that has just moved has served nothing): not a failure."


class ModelReferenceError(MLProjectError, ValueError):
    "A model reference (`models/<folder>`, `churn`, `churn@challenger`, `churn:3`) that is malformed or names no model."


class ModelIntegrityError(MLProjectError, RuntimeError):
    "A model file is outside `models/`, lacks its metadata, or does not match its recorded hash."


class ServiceError(MLProjectError, RuntimeError):
    "A team service (PostgreSQL, the MLflow server) cannot be started, reached or stopped."


def interrupted(signum, frame):
    """A signal handler: SIGTERM (`kill <pid>`) stops a run as Ctrl-C does, so its MLflow run is closed as KILLED and
    nothing half-made is kept. The command line and every tuning worker install it."""
    raise KeyboardInterrupt(f"signal {signum}")
