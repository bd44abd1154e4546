"""Compiled bytecode inside the Lambda deployment package.

``chalice package`` ships sources only: wheels carry no ``.pyc`` and chalice
leaves ``__pycache__`` out. Lambda's ``/var/task`` is read-only, so without
bytecode every cold start compiles every module it imports (chalice, PyJWT,
the Python half of cryptography, PyYAML, slack_sdk, the broker) and throws
the result away, while the runtime's own boto3 and botocore arrive compiled.

``python -m infra.bytecode DIR`` adds, for every ``.py`` in ``DIR``'s
``deployment.zip``, the ``__pycache__`` file the import system looks for.
Each one is *checked-hash* bytecode (PEP 552): valid only while the source
beside it hashes the same, whatever time stamps the zip gives the files, so
a stale file is recompiled, never run. Bytecode belongs to one Python
version: the functions' runtime in ``DIR``'s ``sam.json`` must be the Python
running this, which is also the one chalice packaged for (it takes the
runtime from the interpreter it runs in).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import sys
import tempfile
import zipfile
from importlib.util import cache_from_source
from pathlib import Path

# Zip entries carry no time zone; a fixed date keeps the archive reproducible.
ENTRY_DATE = (2020, 1, 1, 0, 0, 0)
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the package: tracebacks name files there


class BytecodeError(Exception):
    pass


def runtime_of(template: dict[str, object]) -> str:
    """The one Python runtime of the template's functions."""
    resources = template.get("Resources", {})
    assert isinstance(resources, dict)
    runtimes = {str(r.get("Properties", {}).get("Runtime")) for r in resources.values()
                if isinstance(r, dict) and r.get("Type") == "AWS::Serverless::Function"}
    if len(runtimes) != 1:
        raise BytecodeError(f"expected one Python runtime for the functions, found {sorted(runtimes) or 'none'}")
    return runtimes.pop()


def add_bytecode(package: Path, runtime: str) -> int:
    """Write checked-hash bytecode for every source in ``package`` (a zip); the number of modules compiled.

    Bytecode the package already holds for one of its sources (a wheel's, or a
    checkout's ``__pycache__`` that ``chalice package`` picked up) is replaced,
    or dropped if the source does not compile: it may be stale or unchecked,
    and an unchecked ``.pyc`` runs whatever its source now says. Every other
    entry is copied as it was (data, mode, date, compression).
    """
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if runtime != here:
        raise BytecodeError(f"the functions run {runtime} but this is {here}: bytecode is per version; "
                            f"package with {runtime}")
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "task"
        with zipfile.ZipFile(package) as archive:
            entries = archive.infolist()
            archive.extractall(tree)
        ours = {cache_from_source(entry.filename) for entry in entries
                if entry.filename.endswith(".py") and not entry.is_dir()}
        for name in ours:
            (tree / name).unlink(missing_ok=True)
        # A source that does not compile for this version is left without bytecode
        # (its import would fail in Lambda alike); compileall says which on stderr.
        compileall.compile_dir(tree, quiet=1, workers=1, stripdir=str(tree), prependdir=LAMBDA_TASK_ROOT,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        compiled = sorted(name for name in ours if (tree / name).is_file())
        rebuilt = package.with_name(package.name + ".tmp")
        with zipfile.ZipFile(package) as source, \
                zipfile.ZipFile(rebuilt, "w", compression=zipfile.ZIP_DEFLATED) as target:
            for entry in entries:
                if entry.filename not in ours:
                    target.writestr(entry, source.read(entry))
            for name in compiled:
                info = zipfile.ZipInfo(name, date_time=ENTRY_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(info, (tree / name).read_bytes())
        os.replace(rebuilt, package)
    return len(compiled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.bytecode", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="chalice package's output: deployment.zip and sam.json")
    args = parser.parse_args(argv)
    try:
        template = json.loads((args.directory / "sam.json").read_text())
        added = add_bytecode(args.directory / "deployment.zip", runtime_of(template))
    except (OSError, ValueError, zipfile.BadZipFile, BytecodeError) as exc:
        print(f"infra.bytecode: {exc}", file=sys.stderr)
        return 1
    print(f"{args.directory / 'deployment.zip'}: {added} compiled modules written (checked-hash, "
          f"{sys.implementation.cache_tag})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
