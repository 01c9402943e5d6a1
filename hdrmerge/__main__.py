"""``python -m hdrmerge`` runs the command-line interface."""

from hdrmerge.cli import main

if __name__ == "__main__":
    main()
