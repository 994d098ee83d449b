"""`python -m vdiag …` runs the CLI (this is also the entry point under `torchrun -m vdiag`)."""

from vdiag.cli.main import main

if __name__ == "__main__":
    main()
