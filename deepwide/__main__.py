"""``python -m deepwide`` runs the CLI."""

from deepwide.cli import main

if __name__ == "__main__":
    main()
