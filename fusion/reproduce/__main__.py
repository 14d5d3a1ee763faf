"""``python -m fusion.reproduce``: see `fusion.reproduce.command`."""

from fusion.reproduce.command import main

main()
