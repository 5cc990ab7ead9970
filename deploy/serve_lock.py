"""Write the serving locks (requirements-serve.lock, -torch, -fetch) from deploy/requirements-serve*.in, and the stack's
tracking server's (requirements-tracking.lock) from deploy/requirements-tracking.in.

pip's own resolver does the work (`pip install --dry-run --report`), constrained to requirements.lock's versions, so
the serving install is a subset of the full one: the same numpy, pandas, scikit-learn... as training used. The only
package not in the full lock is `xgboost-cpu`, pinned to the lock's `xgboost` version (the same module, CPU only).

    python deploy/serve_lock.py            # write both locks (make lock runs it)
    python deploy/serve_lock.py --check    # exit 1 when a lock is not what the .in files and requirements.lock give
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_LOCK = ROOT / "requirements.lock"
SERVE, TORCH, FETCH = (ROOT / f"deploy/requirements-serve{part}.in" for part in ("", "-torch", "-fetch"))
TRACKING = ROOT / "deploy/requirements-tracking.in"
LOCKS = {  # lock file: the .in files it resolves
    ROOT / "requirements-serve.lock": [SERVE],  # a baked-in model of any family but the network
    ROOT / "requirements-serve-torch.lock": [SERVE, TORCH],  # a baked-in network, or a blend holding one
    ROOT / "requirements-serve-fetch.lock": [SERVE, TORCH, FETCH],  # no model in the image: any, from MLflow
    ROOT / "requirements-tracking.lock": [TRACKING],  # the stack's MLflow server on its PostgreSQL
}
HEADER = "# {what}, resolved from {ins} against requirements.lock: regenerate with 'make lock'.\n"


def pins(lock: Path) -> dict[str, str]:
    "Canonical name: version, for each `name==version` line of a lock file."
    found = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[canonical(name)] = version.strip()
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(ins: list[Path]) -> dict[str, str]:
    "What pip installs for the requirements in `ins`, constrained to the full lock (xgboost-cpu to its xgboost)."
    full = pins(FULL_LOCK)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(
            "".join(f"{name}=={version}\n" for name, version in full.items()) + f"xgboost-cpu=={full['xgboost']}\n"
        )
        report = Path(tmp) / "report.json"
        requirements = [a for f in ins for a in ("-r", str(f))]
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
             "--report", str(report), "-c", str(constraints), *requirements],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"pip could not resolve {[f.name for f in ins]}:\n{done.stderr}")
        chosen = {
            canonical(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]
        }
    torch = full.get("torch")
    if "torch" in chosen and torch:  # the CPU build's local version (2.13.0+cpu) is pinned as the full lock pins it
        chosen["torch"] = torch
    strays = {n: v for n, v in chosen.items() if n != "xgboost-cpu" and full.get(n) != v}
    if strays:
        raise SystemExit(f"resolved outside requirements.lock: {strays}")
    return chosen


def render(lock: Path, ins: list[Path]) -> str:
    chosen = resolve(ins)
    body = "".join(f"{name}=={version}\n" for name, version in sorted(chosen.items()))
    what = "The stack's tracking server" if TRACKING in ins else "The serving install"
    return HEADER.format(what=what, ins=", ".join(str(f.relative_to(ROOT)) for f in ins)) + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for lock, ins in LOCKS.items():
        text = render(lock, ins)
        if args.check:
            if not lock.is_file() or lock.read_text() != text:
                stale.append(lock.name)
        else:
            lock.write_text(text)
            print(f"wrote {lock.relative_to(ROOT)} ({text.count('==')} packages)")
    if stale:
        print(f"stale: {', '.join(stale)}: run 'make lock' (or python deploy/serve_lock.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
