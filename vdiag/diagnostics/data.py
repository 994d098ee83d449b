"""Which dataset a diagnostic reads: `--data`, else the one recorded in the checkpoint, else the
default synthetic dataset (generated on first use, and said so)."""

from __future__ import annotations

from dataclasses import dataclass

from vdiag.data.formats import DatasetIndex, load_index
from vdiag.data.synthetic import default_synthetic_dataset
from vdiag.diagnostics.model import DiagnosticModel


@dataclass(frozen=True)
class DataRef:
    """A dataset a diagnostic reads: folder or CSV, layout (`FORMATS`, "auto" detects it), and the
    UCF-101 / HMDB-51 split number (1–3)."""

    path: str
    format: str = "auto"
    split_id: int = 1

    def split(self, name: str) -> DatasetIndex:
        """The index of split `name` ("train", "val", "test"); raises VdiagError for a missing or malformed dataset."""
        return load_index(self.path, self.format, name, self.split_id)


def resolve_data(model: DiagnosticModel, path: str | None = None, *, format: str | None = None, split_id: int | None = None) -> DataRef:
    """The dataset a diagnostic reads: `path`, else the one recorded in a vdiag checkpoint, else the
    default synthetic dataset (generated on first use, and said so).

    Args:
        model: the loaded checkpoint (its config records the training data).
        path: the dataset folder or CSV (`--data`).
        format: its layout [auto, or as recorded].
        split_id: the UCF-101 / HMDB-51 split [1, or as recorded].

    Returns:
        The `DataRef`.
    """
    recorded = (model.config or {}).get("data", {})
    if path is None and recorded.get("path"):
        path = recorded["path"]
        format = format or recorded.get("format", "auto")
        split_id = split_id or recorded.get("split_id", 1)
    if not path:
        path = str(default_synthetic_dataset())
    return DataRef(str(path), format or "auto", split_id or 1)
