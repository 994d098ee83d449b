"""The HTML / Markdown report (`vdiag report`)."""
