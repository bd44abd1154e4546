"""Build the copy-anywhere client: one executable file, ``python3 rolebroker.pyz ...``.

A zipapp of the package with each module's bytecode beside its source, so
nothing is compiled when it starts (a plain script is recompiled on every
run, as Python caches bytecode only for imported modules). The bytecode is
"unchecked-hash" bytecode for the Python that builds it: zipimport uses it
without comparing timestamps; any other Python version ignores it and
compiles the sources in memory instead, so the file still runs anywhere
from 3.9 on, only more slowly.

The archive's ``__main__`` is the hot path itself, built from
``rolebroker/_fast.py``: a cache hit then imports no module from the archive
at all, and a miss imports ``rolebroker.cli`` from it as usual. Directory
entries are left out: zipimport reads every entry of the archive on start.

Usage: python3 client/make_pyz.py [OUTPUT]   (default build/rolebroker.pyz)
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent / "rolebroker"
MAIN_TAIL = '\n\nif __name__ == "__main__":\n    sys.exit(main())\n'


def build(output: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="rolebroker-pyz-") as work:
        root = Path(work)
        shutil.copytree(PACKAGE, root / "rolebroker",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__main__.py"))
        main = (PACKAGE / "_fast.py").read_text(encoding="utf-8")
        (root / "__main__.py").write_text(main + MAIN_TAIL, encoding="utf-8")
        # legacy=True puts module.pyc beside module.py, the only place zipimport looks.
        compiled = compileall.compile_dir(root, quiet=1, legacy=True,
                                          invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        if not compiled:
            raise SystemExit("compiling the client failed")
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(root, output, interpreter="/usr/bin/env python3",
                              filter=lambda path: not (root / path).is_dir())
    return output


def main() -> int:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "build/rolebroker.pyz")
    print(build(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
