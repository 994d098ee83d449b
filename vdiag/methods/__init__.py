"""Methods, one file per family; `build_method` maps a name to its class.

Each method composes a backbone, heads and a loss from `vdiag.losses`; see the module docstrings
for the paper equations. Wrappers (ViDiDi, BOLD-DI, BOD-VCL) compose with these base objectives.
"""

from __future__ import annotations

import inspect

from vdiag.data.formats import DatasetIndex, check_target
from vdiag.errors import VdiagError
from vdiag.methods.base import Method
from vdiag.methods.bodvcl import BODVCLBYOL, BODVCLMoCo, BODVCLSimCLR
from vdiag.methods.bolddi import BOLDDIBYOL, BOLDDIMoCo, BOLDDISimCLR, BOLDDISwAV
from vdiag.methods.byol import BYOL
from vdiag.methods.concepts import Concepts
from vdiag.methods.dclr import DCLR
from vdiag.methods.moco import MoCo
from vdiag.methods.simclr import SimCLR
from vdiag.methods.supervised import Supervised
from vdiag.methods.swav import SwAV
from vdiag.methods.vicreg import VICReg
from vdiag.methods.vididi import ViDiDiBYOL, ViDiDiSimCLR, ViDiDiVICReg
from vdiag.models.backbones import VideoBackbone, build_backbone

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "swav": SwAV,
    "vicreg": VICReg,
    "supervised": Supervised,
    "vididi-simclr": ViDiDiSimCLR,
    "vididi-byol": ViDiDiBYOL,
    "vididi-vicreg": ViDiDiVICReg,
    "dclr": DCLR,
    "concepts": Concepts,
    "bolddi-simclr": BOLDDISimCLR,
    "bolddi-moco": BOLDDIMoCo,
    "bolddi-byol": BOLDDIBYOL,
    "bolddi-swav": BOLDDISwAV,
    "bodvcl-simclr": BODVCLSimCLR,
    "bodvcl-byol": BODVCLBYOL,
    "bodvcl-moco": BODVCLMoCo,
}


def method_arguments(name: str) -> dict[str, object]:
    """The keyword arguments a method takes, with their defaults (None where required).

    A wrapper (`class ViDiDiSimCLR(ViDiDi, SimCLR)`) takes its own arguments plus, through
    `**base_arguments`, those of the base objective: the classes' signatures are merged along the MRO.
    """
    arguments: dict[str, object] = {}
    for cls in METHODS[name].__mro__:
        if "__init__" not in vars(cls) or not issubclass(cls, Method) or cls is Method:
            continue
        for p in list(inspect.signature(cls.__init__).parameters.values())[2:]:  # skip self, backbone
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            arguments.setdefault(p.name, None if p.default is inspect.Parameter.empty else p.default)
    return arguments


def build_method(name: str, backbone: VideoBackbone, **arguments) -> Method:
    """`build_method('simclr', backbone, temperature=0.2)`; unknown names and arguments are user errors.

    Args:
        name: a key of `METHODS`.
        backbone: the video backbone the method trains.
        **arguments: the method's options (`method_arguments(name)` lists them with defaults).

    Returns:
        The method module, on the CPU.

    Raises:
        VdiagError: an unknown method or option, or an option value the method refuses.
    """
    if name not in METHODS:
        raise VdiagError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    known = method_arguments(name)
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise VdiagError(f"method {name!r} has no option {unknown[0]!r}; its options are {', '.join(known)}")
    return METHODS[name](backbone, **arguments)


def build_model(config: dict, index: DatasetIndex | None = None) -> Method:
    """Backbone + method from a resolved config: what training and every diagnostic build.

    Args:
        config: a complete training config (`vdiag.train.config.resolve_config`, or the `config`
            stored in a checkpoint after `vdiag.train.config.migrate_config`): `method`,
            `method_args`, `backbone.{name,keep_temporal,weights}`.
        index: the training data; sizes the supervised head from its classes or factor values.
            Without it the number of classes recorded in `method_args.num_classes` is used.

    Returns:
        The method module (untrained unless `backbone.weights` names a file), on the CPU.

    Raises:
        VdiagError: unknown method, backbone or option; a supervised config without its number of
            classes; a `--target` that is not a factor of the data.
    """
    backbone_cfg = config["backbone"]
    backbone = build_backbone(backbone_cfg["name"], backbone_cfg["keep_temporal"], backbone_cfg["weights"])
    arguments = dict(config["method_args"])
    if config["method"] == "supervised":
        arguments["num_classes"] = _num_classes(arguments.get("target", "label"), index, arguments.get("num_classes"))
        config["method_args"]["num_classes"] = arguments["num_classes"]
    return build_method(config["method"], backbone, **arguments)


def _num_classes(target: str, index: DatasetIndex | None, recorded: int | None) -> int:
    if index is None:
        if recorded is None:
            raise VdiagError("a supervised model needs its number of classes; it is missing from the config")
        return recorded
    check_target(index, target)
    return index.num_classes if target == "label" else len(index.factor_values[target])
