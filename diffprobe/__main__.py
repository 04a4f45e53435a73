"""``python -m diffprobe`` runs the command line."""

from diffprobe.cli import main

main()
