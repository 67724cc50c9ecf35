"""`python -m steerlab` runs the CLI."""

from steerlab.cli import main

main()
