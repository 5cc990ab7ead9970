"""Copy notebooks for nbval, numbering their code cells.

nbdev-clean blanks every `execution_count`, and nbval refuses a stored output whose cell has no
count ("Unrun reference cell has outputs"). The committed notebooks stay clean; nbval runs on
numbered copies. Usage: python tests/nbval_copies.py SRC_DIR DEST_DIR
"""

import sys
from pathlib import Path

import nbformat


def numbered_copies(src: Path, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        count = 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                count += 1
                cell.execution_count = count
                for output in cell.outputs:
                    if "execution_count" in output:
                        output["execution_count"] = count
        nbformat.write(nb, dest / path.name)
        written.append(dest / path.name)
    return written


if __name__ == "__main__":
    copies = numbered_copies(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{len(copies)} notebooks numbered for nbval in {sys.argv[2]}")
