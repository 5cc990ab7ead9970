"""The `ml-project` command (`ml_project.cli:app`): its shared parts in `common`, its commands in `lifecycle`,
`operations` and `deploy`, registered on `app` in that order, which is the order `ml-project --help` lists them.

Hand-written (not exported from a notebook): the command line parses and prints; every stage it runs is a notebook's.
"""

from ml_project.cli import deploy, lifecycle, operations  # noqa: F401  (importing them registers their commands)
from ml_project.cli.common import app

__all__ = ["app"]
