"""`vdiag doctor`: what this environment has, and whether it works, checked for real.

Each decoder is tested by writing a tiny H.264 clip with PyAV and decoding it back; the two
decoders must also agree on it. Known traps are detected by trying them (an import that fails, a
torch / torchvision pair whose compiled operators do not load).

This checks the environment only, on vdiag's own clean file: whether a dataset's files read right
(edit-list trims, B-frame AVI, rotation, VFR, unreadable files) is what `vdiag check-data DATA`
checks, file by file.
"""

from __future__ import annotations

import importlib
import platform
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdiag import __version__
from vdiag.results import Result

CHECK_DATA_HINT = "this checks the environment; to check a dataset's files run: vdiag check-data DATA"
PACKAGES = ("torch", "torchvision", "pytorchvideo", "decord", "av", "captum", "numpy", "sklearn", "matplotlib", "rich", "click")


@dataclass
class Check:
    """One doctor check: its name, whether it passed, what was seen, and whether vdiag needs it."""

    name: str
    ok: bool
    detail: str
    required: bool = True


DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        importlib.import_module(module)
    except Exception:
        return None
    try:
        return metadata.version(DISTRIBUTIONS.get(module, module))
    except metadata.PackageNotFoundError:
        return "unknown"


def _decoder_checks(workdir: Path) -> list[Check]:
    from vdiag.data.decode import read_frames, write_video

    clip = np.zeros((8, 32, 32, 3), np.uint8)
    for t in range(8):
        clip[t, :, :, 0] = 30 * t  # a frame's red level identifies it
    path = workdir / "doctor.mp4"
    try:
        write_video(path, clip, fps=8)
    except Exception as err:
        return [Check("PyAV H.264 writer", False, f"cannot write H.264 with PyAV: {err}")]
    checks = [Check("PyAV H.264 writer", True, "wrote a 8-frame 32×32 clip")]
    decoded = {}
    for decoder, required in (("pyav", True), ("decord", False)):
        try:
            report: dict = {}
            frames = read_frames(path, [0, 3, 7], decoder, report=report)
            error = np.abs(frames[:, 16, 16, 0].astype(int) - [0, 90, 210]).max()
            ok = bool(error <= 4) and report["decoder"] == decoder
            decoded[decoder] = frames
            detail = "decodes the right frames" if ok else f"frames off by {error} levels"
            if report["decoder"] != decoder:
                detail = f"not usable: {report['switched']}"
            checks.append(Check(f"{decoder} decoder", ok, detail, required))
        except Exception as err:
            checks.append(Check(f"{decoder} decoder", False, str(err).splitlines()[0][:120], required))
    if len(decoded) == 2:
        diff = int(np.abs(decoded["pyav"].astype(int) - decoded["decord"]).max())
        checks.append(Check("decord = PyAV", bool(diff <= 2), f"max pixel difference {diff}", False))
    return checks


def _trap_checks() -> list[Check]:
    with warnings.catch_warnings():  # third-party deprecation noise from these imports is not news
        warnings.simplefilter("ignore")
        return _import_checks()


def _import_checks() -> list[Check]:
    checks = []
    try:
        importlib.import_module("pytorchvideo.transforms")
        checks.append(Check("pytorchvideo.transforms", True, "imports (vdiag uses torchvision.transforms.v2 anyway)", False))
    except Exception as err:
        checks.append(
            Check(
                "pytorchvideo.transforms",
                False,
                f"does not import ({type(err).__name__}); harmless: vdiag uses torchvision.transforms.v2",
                False,
            )
        )
    for module in ("pytorchvideo.models", "pytorchvideo.data"):
        try:
            importlib.import_module(module)
            checks.append(Check(module, True, "imports"))
        except Exception as err:
            checks.append(Check(module, False, f"{type(err).__name__}: {str(err)[:100]}"))
    try:
        import torch
        import torchvision

        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        checks.append(
            Check("torch/torchvision pair", True, f"torchvision {torchvision.__version__} operators load with torch {torch.__version__}")
        )
    except Exception as err:
        checks.append(Check("torch/torchvision pair", False, f"mismatched builds ({str(err)[:80]}); install matching versions"))
    return checks


def _cuda_checks() -> tuple[list[Check], dict]:
    import torch

    info = {"cuda_available": torch.cuda.is_available(), "cuda_devices": [], "cuda_build": torch.version.cuda}
    if not info["cuda_available"]:
        detail = f"no GPU visible (torch built with CUDA {torch.version.cuda})" if torch.version.cuda else "CPU-only torch build"
        return [Check("CUDA", False, detail, False)], info
    info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        value = float((torch.ones(4, device="cuda") * 2).sum())
        ok = value == 8.0
        detail = f"{len(info['cuda_devices'])} device(s): {', '.join(info['cuda_devices'])}"
    except Exception as err:
        ok, detail = False, f"a GPU is visible but a kernel failed: {str(err)[:100]}"
    return [Check("CUDA", ok, detail, False)], info


def run_doctor() -> Result:
    """Run every check: package versions, decoders (for real), import traps, CUDA.

    Returns:
        A Result with `metrics["problems"]` = required checks that failed, the checks under
        `details["checks"]` and a pointer to `vdiag check-data` under `details["hint"]`.
    """
    versions = {name: _version(name) for name in PACKAGES}
    with tempfile.TemporaryDirectory() as tmp:
        checks = _decoder_checks(Path(tmp))
    checks += _trap_checks()
    cuda_checks, cuda = _cuda_checks()
    checks += cuda_checks
    metrics = {
        "decoders_working": sum(c.ok for c in checks if c.name.endswith(" decoder")),
        "cuda_available": int(cuda["cuda_available"]),
        "cuda_devices": len(cuda["cuda_devices"]),
        "problems": sum(1 for c in checks if c.required and not c.ok),
    }
    return Result(
        command="doctor",
        metrics=metrics,
        config={"python": platform.python_version(), "platform": platform.platform(), "vdiag": __version__},
        details={
            "versions": versions,
            "checks": [{"name": c.name, "ok": c.ok, "required": c.required, "detail": c.detail} for c in checks],
            "cuda": cuda,
            "hint": CHECK_DATA_HINT,
        },
    )
