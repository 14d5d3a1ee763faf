"""``python -m fusion``: the Lightning command line (see :mod:`fusion.cli`)."""

from fusion.cli import main

if __name__ == "__main__":
    main()
