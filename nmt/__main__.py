"""``python -m nmt`` (also what ``torchrun -m nmt`` launches)."""

from nmt.cli.main import main

main()
