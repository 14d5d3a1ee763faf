"""``python -m fusion``: the ``fusion`` command (see `fusion.cli`)."""

import sys

from fusion.cli import run

if __name__ == "__main__":
    sys.exit(run())
