"""``python -m services.cli`` is ``multitune``."""

from services.cli import main

main()
