"""Bi-level training on per-frame Koopman features, shared by BOLD-DI and BOD-VCL.

BOLD-DI Eq. 12–14 and Algorithm 1: an inner (lower-level) loss moves the parameters by plain
gradient steps, θ_{i+1} = θ_i − γ ∇L_inner(θ_i) for k steps, and the outer (upper-level) loss is
evaluated at θ* = θ_k; the optimiser then steps θ with the hypergradient d L_outer(θ*) / dθ
= Π_i (I − γ H_i) ∇L_outer(θ*), H_i the Hessian of L_inner at θ_i. App. E compares ways to get it:

- `hypergradient="fd"` (AID-FD, DARTS' finite difference, the paper's default, Table 8): the
  Hessian-vector products come from gradients at θ_i ± εv, ε = fd_epsilon/‖v‖, walking back from
  θ_k: v ← v − γ (∇L_inner(θ_i + εv) − ∇L_inner(θ_i − εv)) / 2ε. Memory stays that of one pass.
  k inner steps cost 1 + 3k forward-backward passes (inner gradient, two differences, and the outer pass).
  `hvp="forward"` takes the one-sided difference (∇L_inner(θ_i + εv) − ∇L_inner(θ_i)) / ε instead,
  reusing the inner gradient already computed at θ_i: 1 + 2k passes, error O(ε) instead of O(ε²)
  (the central difference's); tests/test_bilevel.py checks both orders against the unrolled hypergradient.
- `hypergradient="itd"` (ITD-RMAD): exact reverse-mode differentiation through the unrolled inner
  steps (`create_graph=True`, parameters swapped in with `torch.func.functional_call`), at the price
  of keeping k + 1 graphs.
- `hypergradient="first-order"`: the gradient at θ* applied to θ, dropping the γH terms.
- `single_level=True`: Table 5's ablation, L_outer(θ) + L_inner(θ) summed and minimised together.
- `inner_steps=0`: θ* = θ, the outer loss alone (Table 14's "v-SimCLR + L_dynamic" row for BOLD-DI).

Why torch.func and not Betty (the paper's library): Betty wants the lower and upper problems as
separate modules with their own optimisers and drives the training loop itself; here the inner step
is a few lines over the same parameters, composes with vdiag's trainer, DDP and checkpoints, and
`functional_call` is maintained inside PyTorch.

**Mixed precision.** Every gradient that enters a finite difference is taken in float32 with
autocast disabled (`vdiag.losses.precision.autocast_disabled`), whatever `train.amp` says: the two
gradients differ by ε·Hv, about 1 % of either, below bf16's resolution of ~0.4 %. With `hvp="forward"`
that includes the inner step's own gradient (it is reused); the outer pass runs under autocast.

Inner passes run on copies of the batch-norm running statistics, so only the outer pass updates
them, once per step as in the base method. Under DDP every gradient the method takes itself (inner
steps, v, the finite differences) is averaged over ranks (`torch.autograd.grad` bypasses DDP), so
the result equals one process on the whole batch.

The optimiser receives the hypergradient through a surrogate: the returned `loss` has the value of
L_outer(θ*) and the gradient h (Σ θ·h − sg(Σ θ·h) added), so the trainer needs no special case.

The Koopman features (`koopman_features`) are the base method's projector applied to each time
step of the backbone's feature map, L2-normalised: u_t ∈ R^M with M the projector's output width
(Table 13's M; 128 by default). The clip representation Z is the projector of the time-pooled
features, so u_t and Z live in the same space and Z · φ_j is defined. Normalising makes the
prediction loss scale-free (a shrinking projector cannot lower it, as the contrastive losses are
blind to scale).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from vdiag import koopman
from vdiag.distributed import average_across_ranks
from vdiag.errors import VdiagError
from vdiag.losses.precision import autocast_disabled
from vdiag.methods.base import Method
from vdiag.models.backbones import VideoBackbone

HYPERGRADIENTS = ("fd", "itd", "first-order")
HESSIAN_VECTOR_PRODUCTS = ("central", "forward")


class KoopmanBilevel(Method):
    """Bi-level optimisation over per-frame features; subclasses define `inner_loss` and `outer_loss`.

    Not `recomputable`: the inner and finite-difference passes run at swapped-in parameters
    (`functional_call`), and a checkpointed block would recompute its activations in backward with the
    module's own parameters instead.

    Args:
        inner_steps: k, inner gradient steps per training step (1, Table 9: 1 / 5 / 10; 0 = none).
        inner_lr: γ of the inner step θ − γ∇L_inner (plain SGD, whatever the outer optimiser).
        hypergradient: 'fd' (AID-FD), 'itd' (unrolled), 'first-order'.
        fd_epsilon: finite-difference radius relative to ‖v‖ (DARTS: 0.01).
        hvp: the finite difference of AID-FD: 'central' (two extra passes per inner step, error O(ε²),
            DARTS Eq. 8) or 'forward' (one extra pass, reusing the inner gradient, error O(ε)).
        single_level: sum inner and outer losses instead (Table 5's ablation).
        **base_arguments: the base objective's options (temperature, projector widths, …).
    """

    recomputable = False

    def __init__(
        self,
        backbone: VideoBackbone,
        *,
        inner_steps: int = 1,
        inner_lr: float = 0.05,
        hypergradient: str = "fd",
        fd_epsilon: float = 0.01,
        hvp: str = "central",
        single_level: bool = False,
        **base_arguments,
    ):
        super().__init__(backbone, **base_arguments)
        if hypergradient not in HYPERGRADIENTS:
            raise VdiagError(f"unknown hypergradient {hypergradient!r}; choose one of {', '.join(HYPERGRADIENTS)}")
        if hvp not in HESSIAN_VECTOR_PRODUCTS:
            raise VdiagError(f"unknown method_args.hvp {hvp!r}; choose one of {', '.join(HESSIAN_VECTOR_PRODUCTS)}")
        if int(inner_steps) < 0 or inner_lr <= 0 or fd_epsilon <= 0:
            raise VdiagError("method_args.inner_steps must be ≥ 0, and inner_lr and fd_epsilon > 0")
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.hypergradient = hypergradient
        self.fd_epsilon = float(fd_epsilon)
        self.hvp = hvp
        self.single_level = bool(single_level)
        self.ridge = 1e-3  # the shared estimator's relative ridge; BOLD-DI and BOD-VCL expose it as an option
        self._frames: torch.Tensor | None = None

    # ---- per-frame features -------------------------------------------------------------------
    def encode(self, clips: torch.Tensor, head: torch.nn.Module, backbone: torch.nn.Module | None = None) -> torch.Tensor:
        """As `Method.encode`, keeping the online backbone's per-time-step features for
        `koopman_features` (one backbone pass serves both)."""
        if backbone is not None and backbone is not self.backbone:
            return super().encode(clips, head, backbone)
        n, positives = clips.shape[:2]
        frames = self.backbone.feature_map(clips.flatten(0, 1)).mean(dim=(3, 4)).transpose(1, 2)  # (nρ, T'', C)
        if frames.shape[1] < 2:
            raise VdiagError(
                f"{self.name} needs at least 2 time steps per clip from the backbone, got {frames.shape[1]}; "
                "set backbone.keep_temporal=true (or --keep-temporal) or sample more frames"
            )
        self._frames = frames
        return head(frames.mean(dim=1)).view(n, positives, -1)

    def koopman_features(self) -> torch.Tensor:
        """u_t = normalise(projector(f_t)) for the clips of the last `encode`: (nρ, T'', M)."""
        frames, self._frames = self._frames, None
        clips, steps, channels = frames.shape
        features = self.projector(frames.reshape(clips * steps, channels))
        features = features.to(torch.promote_types(features.dtype, torch.float32))  # fp32 or wider under autocast
        return F.normalize(features, dim=-1).view(clips, steps, -1)

    def linearity_loss(self, features: torch.Tensor) -> torch.Tensor:
        """‖U_fore − K̂ U_back‖² with K̂ fitted on these features (BOLD-DI Eq. 6; BOD-VCL L_pred)."""
        return koopman.prediction_loss(features, koopman.fit_operator(features, "shared", self.ridge))

    def base_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The base objective's own forward (SimCLR, MoCo, …), skipping the bi-level wrapper."""
        return super().forward(batch)

    # ---- the two levels (subclasses) ----------------------------------------------------------
    def inner_loss(self, batch: dict, constants: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        """(loss, logged values, constants). `constants` are detached quantities the loss treats as
        fixed (BOLD-DI's strata): computed on the first call at an iterate (None given) and passed
        back unchanged to the finite-difference evaluations around it, so that the inner loss is a
        smooth function of θ there."""
        raise NotImplementedError

    def outer_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- the step -----------------------------------------------------------------------------
    def forward(self, batch: dict, stage: str | None = None, constants: dict | None = None):
        if stage == "inner":
            return self.inner_loss(batch, constants)
        if stage == "outer":
            return self.outer_loss(batch)
        if self.single_level or self.inner_steps == 0:
            outputs = self.outer_loss(batch)
            if self.single_level:
                inner, logs, _ = self.inner_loss(batch)
                outputs = {**outputs, **logs, "loss": outputs["loss"] + inner, "inner": inner.detach()}
            return outputs
        return self._bilevel_step(batch)

    def _bilevel_step(self, batch: dict) -> dict[str, torch.Tensor]:
        names = [name for name, p in self.named_parameters() if p.requires_grad]
        params = [p for p in self.parameters() if p.requires_grad]
        unrolled = self.hypergradient == "itd"
        reused = self.hypergradient == "fd" and self.hvp == "forward"  # the inner gradient enters the difference: float32
        theta, iterates, first_inner, logs = params, [], None, {}
        for _ in range(self.inner_steps):  # Eq. 13 / Alg. 1 lines 5–21
            with autocast_disabled() if reused else nullcontext():
                inner, logs, constants = self._call(names, theta, batch, "inner")
                gradient = self._gradient(inner, theta, create_graph=unrolled)
            iterates.append((theta, constants, gradient if reused else None))
            first_inner = inner.detach() if first_inner is None else first_inner
            theta = [p - self.inner_lr * g for p, g in zip(theta, gradient)]
            if not unrolled:
                theta = [t.detach().requires_grad_(True) for t in theta]
        outputs = self._call(names, theta, batch, "outer")  # Eq. 14 / lines 22–24
        outputs = {**outputs, **logs, "inner": first_inner}
        if unrolled:
            return outputs  # the trainer's backward differentiates through the inner steps
        v = self._gradient(outputs["loss"], theta)
        if self.hypergradient == "fd":
            for point, constants, at_point in reversed(iterates):  # v ← (I − γ H_i) v, H_i v by finite differences
                hessian_v = self._hessian_vector(names, point, constants, v, batch, at_point)
                v = [vi - self.inner_lr * h for vi, h in zip(v, hessian_v)]
        surrogate = sum((p * g).sum() for p, g in zip(params, v))
        outputs["loss"] = outputs["loss"].detach() + surrogate - surrogate.detach()
        return outputs

    def _call(self, names: list[str], theta: list[torch.Tensor], batch: dict, stage: str, constants: dict | None = None):
        """This method's forward at parameters θ (by name); inner passes on scratch BN statistics."""
        swapped: dict[str, torch.Tensor] = dict(zip(names, theta))
        if stage == "inner":
            swapped.update(self._batchnorm_statistics())
        return functional_call(self, swapped, (batch,), {"stage": stage, "constants": constants}, strict=False)

    def _batchnorm_statistics(self) -> dict[str, torch.Tensor]:
        copies = {}
        for module_name, module in self.named_modules():
            if isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None:
                for buffer_name in ("running_mean", "running_var", "num_batches_tracked"):
                    copies[f"{module_name}.{buffer_name}" if module_name else buffer_name] = getattr(module, buffer_name).clone()
        return copies

    def _gradient(self, loss: torch.Tensor, theta: list[torch.Tensor], create_graph: bool = False) -> list[torch.Tensor]:
        gradient = torch.autograd.grad(loss, theta, create_graph=create_graph, allow_unused=True, materialize_grads=True)
        return average_across_ranks(list(gradient), differentiable=create_graph)

    def _hessian_vector(
        self,
        names: list[str],
        theta: list[torch.Tensor],
        constants: dict,
        v: list[torch.Tensor],
        batch: dict,
        at_theta: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """H(θ) v by a finite difference with ε = fd_epsilon / ‖v‖, in float32 whatever the autocast state.

        Central (DARTS Eq. 8): (∇L_inner(θ + εv) − ∇L_inner(θ − εv)) / 2ε, two passes, error O(ε²).
        Forward, when `at_theta` = ∇L_inner(θ) is given (taken in float32 by the inner step):
        (∇L_inner(θ + εv) − ∇L_inner(θ)) / ε, one pass, error O(ε).
        """
        norm = torch.sqrt(sum(vi.pow(2).sum() for vi in v)).clamp_min(1e-12)
        epsilon = self.fd_epsilon / norm
        signs = (1.0,) if at_theta is not None else (1.0, -1.0)
        gradients = []
        with autocast_disabled():
            for sign in signs:
                shifted = [(t.detach() + sign * epsilon * vi).requires_grad_(True) for t, vi in zip(theta, v)]
                gradients.append(self._gradient(self._call(names, shifted, batch, "inner", constants)[0], shifted))
        if at_theta is not None:
            return [(plus - here) / epsilon for plus, here in zip(gradients[0], at_theta)]
        return [(plus - minus) / (2 * epsilon) for plus, minus in zip(*gradients)]
