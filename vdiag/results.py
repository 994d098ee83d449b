"""The result contract shared by every analysis command (DESIGN.md, "Results").

A `Result` renders three ways: a rich table on the terminal, a JSON file in its output folder,
and, with `--json`, exactly one JSON object on stdout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdiag import __version__
from vdiag.io import write_json


@dataclass
class Result:
    """What an analysis command returns: metrics, the files it wrote, and enough to repeat it.

    Args:
        command: the command's name ('pretrain', 'diagnose static-bias', …).
        metrics: name → number (NaN / inf are written as null in JSON).
        checkpoint: the checkpoint analysed or written.
        data: the dataset root.
        figures: figure files written.
        config: the settings that produced it.
        files: every file written (`write` adds its own).
        details: anything else JSON-able (per-class tables, histories, …).
    """

    command: str
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    data: str | None = None
    figures: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md's "Results": the fields above plus `vdiag_version`."""
        return {
            "command": self.command,
            "vdiag_version": __version__,
            "checkpoint": self.checkpoint,
            "data": self.data,
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "figures": [str(f) for f in self.figures],
            "files": [str(f) for f in self.files],
            "config": self.config,
            "details": self.details,
        }

    def write(self, path: str | Path) -> Path:
        """Write the JSON file (atomically) and remember it among `files`."""
        path = Path(path)
        if str(path) not in self.files:
            self.files.append(str(path))
        return write_json(path, self.to_dict())


def _json_number(value) -> float | int | None:
    """JSON has no NaN/inf: write them as null rather than emit invalid JSON."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None
