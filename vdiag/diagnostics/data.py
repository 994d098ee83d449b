"""Which dataset a diagnostic reads: `--data`, else the one recorded in the checkpoint, else the
default synthetic dataset (generated on first use, and said so)."""

from __future__ import annotations

from dataclasses import dataclass

from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.diagnostics.model import DiagnosticModel


@dataclass(frozen=True)
class DataRef:
    path: str
    format: str = "auto"
    split_id: int = 1

    def split(self, name: str) -> DatasetIndex:
        return load_index(self.path, self.format, name, self.split_id)


def resolve_data(model: DiagnosticModel, path: str | None = None, format: str | None = None, split_id: int | None = None) -> DataRef:
    recorded = (model.config or {}).get("data", {})
    if path is None and recorded.get("path"):
        path = recorded["path"]
        format = format or recorded.get("format", "auto")
        split_id = split_id or recorded.get("split_id", 1)
    if not path:
        path = str(default_synthetic_dataset())
    return DataRef(str(path), format or "auto", split_id or 1)
