"""`python -m botreg` is the `botreg` command."""

from botreg.cli import console_main

console_main()
