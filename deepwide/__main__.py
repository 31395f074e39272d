"""``python -m deepwide`` runs the CLI."""

from deepwide.cli import main

main()
