"""The project's errors: a user's mistake is one line at the command line; anything else is a bug with its traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml_project import errors
from ml_project.cli import app

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "error, builtin",
    [
        (errors.ConfigError, ValueError),
        (errors.RawDataError, RuntimeError),
        (errors.DataValidationError, ValueError),
        (errors.InputError, ValueError),
        (errors.ModelReferenceError, ValueError),
        (errors.ModelIntegrityError, RuntimeError),
        (errors.ServiceError, RuntimeError),
    ],
)
def test_each_error_is_ours_and_keeps_its_builtin_type(error, builtin):
    assert issubclass(error, errors.MLProjectError) and issubclass(error, builtin)


def test_a_prediction_input_error_names_each_row_and_field():
    problems = [{"row": i, "field": "tenure", "error": "expected int"} for i in range(12)]
    message = str(errors.PredictionInputError(problems))
    assert message.startswith("12 problem(s) in the input: row 0: 'tenure' expected int")
    assert message.endswith("; and 2 more") and isinstance(errors.PredictionInputError(problems), errors.InputError)


def test_a_users_mistake_is_one_line(project):
    result = CliRunner().invoke(app, ["evaluate", "--model", "churn:x"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: model reference 'churn:x': a version is a number, as in churn:3"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(project, tmp_path):
    "A fault of ours, not the user's: a KeyError raised inside the command is no longer dressed up as a message."
    script = tmp_path / "broken.py"
    script.write_text(
        "import sys\nimport ml_project.train.experiment as e\nfrom ml_project.cli import app\n"
        "def broken(*a, **k):\n    raise KeyError('a bug')\ne.run_experiment = broken\n"
        "import ml_project.cli.lifecycle  # noqa\n"
        "sys.argv = ['ml-project', 'train', '-c', 'configs/experiment_001.yaml']\napp()\n"
    )
    done = subprocess.run(
        [str(BIN / "python"), str(script)], cwd=project.root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 70, done.stderr
    assert "Traceback (most recent call last)" in done.stderr and "KeyError: 'a bug'" in done.stderr
    assert "hit a bug (the traceback above). Please report it" in done.stderr
