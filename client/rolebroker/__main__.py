"""``python -m rolebroker``, ``python client/rolebroker`` (the directory) or the zipapp: the same hot path."""

import os
import sys

if not __package__:
    # Run as a directory or file: make the package importable by its name,
    # and keep its own directory off sys.path so no module of ours can shadow
    # one of the standard library's.
    package_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != package_dir]
    sys.path.insert(0, os.path.dirname(package_dir))

from rolebroker._fast import main

sys.exit(main())
