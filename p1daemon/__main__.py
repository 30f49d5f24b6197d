"""`python -m p1daemon` runs the command line."""

from p1daemon.cli import main

main()
