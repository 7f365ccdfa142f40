"""`python -m skiplock` is the `skiplock` command."""

from skiplock.cli import main

main()
