"""The synthetic static/dynamic dataset of BOD-VCL (Fig. 5), as a research instrument.

Every video is drawn from four generative factors whose truth is known:

| factor          | kind    | paper's values (Fig. 5)      | more values by option                    |
|-----------------|---------|------------------------------|------------------------------------------|
| `bg_color`      | static, simple  | blue, green          | red, yellow, purple, orange, cyan, gray  |
| `fg_shape`      | static, complex | pentagon, circle     | square, triangle, star, hexagon          |
| `bg_brightness` | dynamic, simple | brightening, darkening | steady                                 |
| `fg_trajectory` | dynamic, complex| rotation, linear     | orbit, bounce                            |

"rotation" spins the shape in place. A spinning circle would look still, so every shape carries a
dark marker dot off its centre: the spin is visible for every shape.

The truth does not leak (generator version 2): **a single frame says nothing about a dynamic
factor**. At every frame, the background level is uniform on [0.3, 1.1) and the shape's position
uniform over the frame and its angle uniform, for every value of `bg_brightness` and
`fg_trajectory`. Two consequences of that, both forced (a monotone ramp or a path that stays inside
a bounded frame cannot have the same distribution at every frame): the brightness level is cyclic
(a brightening clip that reaches the top restarts at the bottom, about a third of the clips once),
and every path is reflected at the walls ("linear" is a straight path at constant speed, reflected
like a billiard ball; "bounce" the same, 2–5× faster). Conversely the generator is stationary and
time-reversible given the static factors, so a signed frame difference Δ is distributed like −Δ
for every static class: odd features of differences (Δ, clipped Δ) say nothing about a static
factor. (Even features, |Δ|, show where edges moved and how large the brightness step is, which
reveals shape and colour in any video.) tests/test_synthetic_truth.py checks all of this with probes.

Nuisance variation keeps the task from being solvable from one pixel: position, size, speed,
direction, start angle, foreground colour, a per-video offset of the background colour, the phase
and amount of the brightness ramp, and per-frame pixel noise.

Knobs for studying the static shortcut (docs/static-shortcut.md), all off or at today's values by
default, so the default output is unchanged: `texture` (a per-video multiplicative background
texture: a static identity for every video), `radius` (the shape's size range), `speed` (a
multiplier on how far the shape moves or turns over the clip), `brightness_change` (the same for
the background level's ramp) and `color_offset` (the per-video
offset of the background colour: how distinct the colours stay). None of them depends on a dynamic
factor, so a single frame still says nothing about one.

Confounding (the BOD-VCL argument: static and dynamic semantics co-occur in real data). In the
`train` split, each dynamic factor copies its static partner's value index (modulo its number of
values) with probability `correlation`, and is drawn uniformly otherwise; in `val` and `test` every
factor is drawn independently. With uniform factors this makes Cramér's V between the pair equal
to `correlation` in train and 0 elsewhere (measured per split, written to manifest.json).

Each video is drawn from its own random stream, seeded by (seed, split, index): the same options
and seed give the same labels and the same decoded frames, whatever the number of workers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vdiag import __version__
from vdiag.console import note, progress_bar
from vdiag.data.decode import write_video
from vdiag.data.formats import SYNTHETIC_GENERATOR
from vdiag.errors import VdiagError
from vdiag.io import atomic_dir, cache_dir

GENERATOR_VERSION = 2  # 2: single frames say nothing about the dynamic factors (cyclic brightness, folded paths)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

COLORS = {  # RGB at full brightness
    "blue": (40, 80, 200),
    "green": (40, 160, 70),
    "red": (200, 50, 50),
    "yellow": (205, 185, 35),
    "purple": (130, 60, 170),
    "orange": (225, 125, 30),
    "cyan": (35, 175, 185),
    "gray": (128, 128, 128),
}
SHAPES = ("pentagon", "circle", "square", "triangle", "star", "hexagon")
BRIGHTNESS_CHANGES = ("brightening", "darkening", "steady")
TRAJECTORIES = ("rotation", "linear", "orbit", "bounce")

FACTOR_KINDS = {
    "bg_color": "static (simple)",
    "fg_shape": "static (complex)",
    "bg_brightness": "dynamic (simple)",
    "fg_trajectory": "dynamic (complex)",
}
STATIC_FACTORS = ("bg_color", "fg_shape")
DYNAMIC_FACTORS = ("bg_brightness", "fg_trajectory")


@dataclass
class SynthConfig:
    """Every parameter of a synthetic dataset (all of it is written to manifest.json)."""

    size: int = 64
    frames: int = 16
    fps: int = 8
    num_train: int = 1000
    num_val: int = 500
    num_test: int = 500
    seed: int = 0
    correlation: float = 0.8
    label_factor: str = "fg_trajectory"
    bg_color: list[str] = field(default_factory=lambda: ["blue", "green"])
    fg_shape: list[str] = field(default_factory=lambda: ["pentagon", "circle"])
    bg_brightness: list[str] = field(default_factory=lambda: ["brightening", "darkening"])
    fg_trajectory: list[str] = field(default_factory=lambda: ["rotation", "linear"])
    # dynamic factor -> the static factor it follows in the train split
    pairing: dict[str, str] = field(default_factory=lambda: {"fg_trajectory": "bg_color", "bg_brightness": "fg_shape"})
    pixel_noise: float = 2.0
    # static-shortcut knobs (docs/static-shortcut.md); the defaults give generator version 2's output
    texture: float = 0.0  # amplitude of a per-video multiplicative background texture (0: uniform background)
    radius: list[float] = field(default_factory=lambda: [0.13, 0.2])  # shape radius range, fraction of the frame side
    speed: float = 1.0  # multiplier on the distance / angle the shape covers over the clip
    brightness_change: float = 1.0  # multiplier on how much the background level changes over the clip
    color_offset: int = 12  # per-video offset of the background colour, ± levels per channel
    benchmark: str | None = None  # the named setting this dataset started from (BENCHMARKS), if any
    crf: int = 0  # lossless H.264: the only way to get identical decoded frames on every run (see write_video)

    def factors(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in FACTOR_KINDS}

    def counts(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}

    def validate(self) -> None:
        if self.size < 32 or self.size % 2:
            raise VdiagError(f"--size must be an even number of pixels >= 32 (H.264 needs even sizes), got {self.size}")
        if self.frames < 4:
            raise VdiagError(f"--frames must be at least 4, got {self.frames}")
        if min(self.counts().values()) < 0 or sum(self.counts().values()) == 0:
            raise VdiagError("the video counts must be >= 0 and not all zero")
        if not 0.0 <= self.correlation <= 1.0:
            raise VdiagError(f"--correlation must lie in [0, 1], got {self.correlation}")
        if self.benchmark is not None and self.benchmark not in BENCHMARKS:
            raise VdiagError(f"unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
        if self.label_factor not in FACTOR_KINDS:
            raise VdiagError(f"--label-factor must be one of {', '.join(FACTOR_KINDS)}, got {self.label_factor!r}")
        allowed = {"bg_color": tuple(COLORS), "fg_shape": SHAPES, "bg_brightness": BRIGHTNESS_CHANGES, "fg_trajectory": TRAJECTORIES}
        for name, values in self.factors().items():
            unknown = [v for v in values if v not in allowed[name]]
            if unknown or len(values) < 2 or len(set(values)) != len(values):
                raise VdiagError(
                    f"{name} needs two or more distinct values from: {', '.join(allowed[name])} (got {', '.join(values) or 'none'})"
                )
        if not 0.0 <= self.texture < 1.0:
            raise VdiagError(f"--texture must lie in [0, 1) (0: no texture), got {self.texture}")
        if len(self.radius) != 2 or not 0.03 <= self.radius[0] <= self.radius[1] <= 0.3:
            raise VdiagError(f"--radius must be MIN,MAX with 0.03 <= MIN <= MAX <= 0.3 (fractions of the frame side), got {self.radius}")
        if not 0.0 < self.speed <= 4.0:
            raise VdiagError(f"--speed must lie in (0, 4], got {self.speed}")
        if not 0.0 < self.brightness_change <= 3.0:
            raise VdiagError(f"--brightness-change must lie in (0, 3], got {self.brightness_change}")
        if not 0 <= self.color_offset <= 60:
            raise VdiagError(f"--color-offset must lie in [0, 60] levels, got {self.color_offset}")
        for dynamic, static in self.pairing.items():
            if dynamic not in DYNAMIC_FACTORS or static not in STATIC_FACTORS:
                raise VdiagError(
                    f"pairing {dynamic}={static} must map a dynamic factor ({', '.join(DYNAMIC_FACTORS)}) "
                    f"to a static one ({', '.join(STATIC_FACTORS)})"
                )


# Named settings (`vdiag synth-dataset --benchmark NAME`): the dataset parameters, and the training
# that goes with them (the preset and epochs at which the setting was measured).
BENCHMARKS = {
    "static-shortcut": {
        "data": {
            "benchmark": "static-shortcut",
            "size": 32,
            "frames": 8,
            "num_train": 400,
            "num_val": 200,
            "num_test": 200,
            "correlation": 0.95,
            # both dynamic factors follow the background colour, and the brightness ramp is half as
            # steep: otherwise v-SimCLR reads the brightness change at 2 of 3 seeds (measured)
            "pairing": {"fg_trajectory": "bg_color", "bg_brightness": "bg_color"},
            "brightness_change": 0.5,
        },
        "preset": "static-shortcut",
        "epochs": 4,
        "doc": "docs/static-shortcut.md",
    },
}


def synth_config(benchmark: str | None = None, *, seed: int = 0, **given) -> SynthConfig:
    """A dataset's parameters: a named setting's (`BENCHMARKS`) or the defaults, with `given` over them.

    Args:
        benchmark: a name in `BENCHMARKS` (e.g. "static-shortcut"), or None for the defaults.
        seed: the dataset's seed.
        given: `SynthConfig` fields; None values keep the benchmark's (or default) value.

    Returns:
        The `SynthConfig` (not yet validated: `generate_dataset` validates it).

    Raises:
        VdiagError: an unknown benchmark name.
    """
    if benchmark is not None and benchmark not in BENCHMARKS:
        raise VdiagError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    start = dict(BENCHMARKS[benchmark]["data"]) if benchmark else {}
    return SynthConfig(seed=seed, **(start | {key: value for key, value in given.items() if value is not None}))


def default_dataset_dir(config: SynthConfig | None = None) -> Path:
    """Where a dataset goes without --out: `synth-default` for the default parameters, else a
    folder named by a hash of the parameters (so that different datasets never collide)."""
    if config is None or asdict(config) == asdict(SynthConfig()):
        return cache_dir() / "datasets" / "synth-default"
    digest = hashlib.sha1(json.dumps(_identity(asdict(config)), sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "datasets" / f"synth-{digest}"


KNOB_DEFAULTS = {
    "texture": 0.0,
    "radius": [0.13, 0.2],
    "speed": 1.0,
    "brightness_change": 1.0,
    "color_offset": 12,
    "benchmark": None,
}  # added after version 2


def _identity(parameters: dict) -> dict:
    """The parameters that name a dataset: the knobs added later are left out at their defaults, so
    a dataset made before they existed keeps its cache folder and is still reused."""
    return {key: value for key, value in parameters.items() if not (key in KNOB_DEFAULTS and value == KNOB_DEFAULTS[key])}


def default_synthetic_dataset() -> Path:
    """The default dataset's folder, generated on first use (rank 0 only under torchrun, and said so)."""
    from vdiag import distributed as dist

    root = default_dataset_dir()
    if dist.is_main():
        if not (root / "manifest.json").is_file():
            note(f"no --data given: generating the default synthetic dataset into {root} (once)")
        generate_dataset(SynthConfig(), root)
    dist.barrier()
    return root


# --- drawing one video ----------------------------------------------------------------------


def draw_video_params(config: SynthConfig, split: str, index: int) -> dict:
    """Factor values and nuisance parameters of one video, from its own random stream."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, SPLIT_CODES[split], index]))
    factors = config.factors()
    chosen = {name: int(rng.integers(len(factors[name]))) for name in STATIC_FACTORS}
    for name in DYNAMIC_FACTORS:
        partner = config.pairing.get(name)
        follows = split == "train" and partner is not None and rng.random() < config.correlation
        drawn = int(rng.integers(len(factors[name])))
        chosen[name] = chosen[partner] % len(factors[name]) if follows else drawn
    size, frames = config.size, config.frames
    radius = float(rng.uniform(*config.radius) * size)
    hue = rng.random()
    fg_color = _hsv_to_rgb(hue, rng.uniform(0.0, 0.45), rng.uniform(0.88, 1.0))
    values = {name: factors[name][chosen[name]] for name in FACTOR_KINDS}
    path = _trajectory(values["fg_trajectory"], rng, size, frames, radius, config.speed)
    levels = _brightness_levels(values["bg_brightness"], rng, frames, config.brightness_change)
    return {
        "split": split,
        "index": index,
        "factors": values,
        "factor_index": chosen,
        "radius": radius,
        "fg_color": [round(c, 2) for c in fg_color],
        "bg_offset": [int(v) for v in rng.integers(-config.color_offset, config.color_offset + 1, 3)],
        "brightness": [round(float(v), 5) for v in levels],
        "brightness_start": round(float(levels[0]), 5),
        "brightness_end": round(float(levels[-1]), 5),
        "noise_seed": int(rng.integers(2**31)),
        **path,
        # drawn last and only when used, so that every other draw is the same with and without it
        **({"texture_seed": int(rng.integers(2**31))} if config.texture > 0 else {}),
    }


TEXTURE_CELLS = 6  # the texture's grid: random values on a 6×6 grid, bilinearly interpolated


def background_texture(config: SynthConfig, seed: int) -> np.ndarray:
    """A video's multiplicative background texture `(H, W, 3)`, float, 1 ± `config.texture`.

    Smooth colour blobs: uniform values in [−1, 1] on a `TEXTURE_CELLS`² grid per channel,
    bilinearly interpolated to the frame, times the amplitude, plus 1. It is the same on every
    frame and independent of every factor, so it gives each video a static identity (like a scene)
    without telling anything about a factor.

    Args:
        config: the dataset's parameters (`size`, `texture`).
        seed: the video's `texture_seed` (params.jsonl).

    Returns:
        float64 array `(size, size, 3)` of factors in [1 − texture, 1 + texture].
    """
    grid = np.random.default_rng(seed).uniform(-1.0, 1.0, (TEXTURE_CELLS, TEXTURE_CELLS, 3))
    position = (np.arange(config.size) + 0.5) / config.size * (TEXTURE_CELLS - 1)
    low = np.minimum(position.astype(int), TEXTURE_CELLS - 2)
    frac = (position - low)[:, None]
    rows = grid[low] * (1 - frac)[..., None] + grid[low + 1] * frac[..., None]  # (size, cells, 3)
    rows = rows.transpose(1, 0, 2)  # (cells, size, 3): interpolate along the other axis
    field = rows[low] * (1 - frac)[..., None] + rows[low + 1] * frac[..., None]  # (size, size, 3)
    return 1.0 + config.texture * field.transpose(1, 0, 2)


BRIGHTNESS_RANGE = (0.3, 1.1)  # background level, as a multiple of the background colour


def _brightness_levels(kind: str, rng: np.random.Generator, frames: int, change: float = 1.0) -> np.ndarray:
    """Background level per frame: a constant-rate ramp on a cyclic scale, from a uniform phase.

    A monotone ramp inside a bounded range cannot hide its direction from every single frame (its
    mean level must rise over the clip for brightening and fall for darkening). So the level lives
    on a cycle [low, high): it rises (falls) by 0.20–0.30 of full level over the clip, and on
    reaching the top (bottom) it restarts at the bottom (top), which happens once in about a third
    of the clips. The phase is uniform, so the level at every single frame is uniform on
    [low, high) for every value of the factor: one frame says nothing about the direction.
    `change` multiplies the amount (the phase stays uniform, so every frame stays uniform).
    """
    low, high = BRIGHTNESS_RANGE
    width = high - low
    phase = rng.random()
    amount = change * float(rng.uniform(0.2, 0.3)) / width  # change over the clip, as a fraction of the cycle
    sign = {"brightening": 1.0, "darkening": -1.0, "steady": 0.0}[kind]
    return low + width * np.mod(phase + sign * amount * np.arange(frames) / (frames - 1), 1.0)


def _trajectory(kind: str, rng: np.random.Generator, size: int, frames: int, radius: float, speed: float = 1.0) -> dict:
    """Centre positions (x, y) and orientation angles per frame, kept inside the frame.

    Every path is an offset from a centre drawn uniformly on the unfolded square of side 2·(high −
    low), folded back into [low, high] (a reflection at the walls). Folding a uniform point, moved
    by any offset, gives a uniform point: at every single frame the shape's position is uniform over
    the frame and its angle uniform, whatever the trajectory, so one frame says nothing about it.
    `speed` multiplies the distance (linear, bounce) or angle (rotation, orbit) covered over the
    clip; folding keeps every frame uniform for any speed.
    """
    margin = radius + 1.5
    low, high = margin, size - margin
    t = np.arange(frames) / (frames - 1)
    cx, cy = rng.uniform(low, low + 2 * (high - low), 2)
    angle0 = float(rng.uniform(0, 2 * math.pi))
    angles = np.full(frames, angle0)
    if kind == "rotation":  # spin in place: half a turn to a full turn over the clip
        dx = dy = np.zeros(frames)
        angles = angle0 + speed * rng.uniform(math.pi, 2 * math.pi) * rng.choice([-1, 1]) * t
    elif kind in ("linear", "bounce"):  # straight at constant speed, reflected at the walls
        direction = rng.uniform(0, 2 * math.pi)
        distance = speed * (rng.uniform(0.35, 0.55) * size if kind == "linear" else rng.uniform(1.0, 1.5) * size)
        dx, dy = math.cos(direction) * distance * t, math.sin(direction) * distance * t
    elif kind == "orbit":  # circle around a point: half a turn to a full turn
        orbit = rng.uniform(0.12, 0.2) * size
        start = rng.uniform(0, 2 * math.pi)
        phase = start + speed * rng.uniform(math.pi, 2 * math.pi) * rng.choice([-1, 1]) * t
        dx, dy = orbit * (np.cos(phase) - math.cos(start)), orbit * (np.sin(phase) - math.sin(start))
    else:
        raise ValueError(f"unknown trajectory {kind}")
    x, y = _fold(cx + dx, low, high), _fold(cy + dy, low, high)
    return {"x": [round(float(v), 3) for v in x], "y": [round(float(v), 3) for v in y], "angle": [round(float(v), 4) for v in angles]}


def _fold(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect positions back into [low, high] (a bouncing path)."""
    width = high - low
    phase = np.mod(values - low, 2 * width)
    return low + np.where(phase > width, 2 * width - phase, phase)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys

    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h, s, v))


def _shape_vertices(shape: str) -> np.ndarray | None:
    """Polar vertices (angle, radius as a fraction of R) of a star-shaped outline; None for a circle."""
    sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
    if shape == "circle":
        return None
    if shape == "star":
        angles = np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([angles, radii], 1)
    n = sides[shape]
    return np.stack([np.arange(n) * 2 * math.pi / n, np.ones(n)], 1)


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Is each offset (dx, dy) from the centre inside the shape turned by `angle`?

    Every shape here is star-shaped about its centre, so its outline is a radius r(φ) per direction.
    Between vertices P_k and P_k+1 the ray of direction u meets the edge at r = (P_k × P_k+1) / (u × (P_k+1 − P_k)).
    """
    distance = np.hypot(dx, dy)
    vertices = _shape_vertices(shape)
    if vertices is None:
        return distance <= radius
    phi = np.mod(np.arctan2(dy, dx) - angle, 2 * math.pi)
    count = len(vertices)
    step = 2 * math.pi / count
    k = np.minimum((phi // step).astype(int), count - 1)
    a0, r0 = vertices[k, 0], vertices[k, 1] * radius
    a1, r1 = vertices[(k + 1) % count, 0] + np.where(k == count - 1, 2 * math.pi, 0.0), vertices[(k + 1) % count, 1] * radius
    p0x, p0y = r0 * np.cos(a0), r0 * np.sin(a0)
    p1x, p1y = r1 * np.cos(a1), r1 * np.sin(a1)
    ux, uy = np.cos(phi), np.sin(phi)
    boundary = (p0x * p1y - p0y * p1x) / (ux * (p1y - p0y) - uy * (p1x - p0x))
    return distance <= boundary


def render_video(config: SynthConfig, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 `(T, H, W, 3)` and foreground masks bool `(T, H, W)` of one video.

    Anti-aliased by 2×2 supersampling inside the shape's bounding box; the mask is the foreground's
    coverage ≥ 0.5. The marker dot (radius 0.16 R at 0.5 R from the centre, towards a vertex) lies
    inside every shape, the star's narrow arms included.
    """
    size, frames, sub = config.size, config.frames, 2
    base = np.clip(np.array(COLORS[params["factors"]["bg_color"]], float) + params["bg_offset"], 0, 255)
    levels = np.asarray(params["brightness"], float)
    fg = np.array(params["fg_color"])
    marker = np.array([25.0, 25.0, 25.0])
    shape, radius = params["factors"]["fg_shape"], params["radius"]
    noise = np.random.default_rng(params["noise_seed"])
    texture = background_texture(config, params["texture_seed"]) if "texture_seed" in params else None
    video = np.empty((frames, size, size, 3), np.uint8)
    masks = np.zeros((frames, size, size), bool)
    for t in range(frames):
        cx, cy, angle = params["x"][t], params["y"][t], params["angle"][t]
        x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, size)
        y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, size)
        gx, gy = np.meshgrid((np.arange(x0 * sub, x1 * sub) + 0.5) / sub, (np.arange(y0 * sub, y1 * sub) + 0.5) / sub)
        body = _inside(shape, gx - cx, gy - cy, radius, angle)
        mx, my = cx + 0.5 * radius * math.cos(angle), cy + 0.5 * radius * math.sin(angle)
        dot = np.hypot(gx - mx, gy - my) <= 0.16 * radius
        h, w = y1 - y0, x1 - x0
        alpha_body = body.reshape(h, sub, w, sub).mean((1, 3))[..., None]
        alpha_dot = dot.reshape(h, sub, w, sub).mean((1, 3))[..., None]
        if texture is None:
            frame = np.broadcast_to(np.clip(base * levels[t], 0, 255), (size, size, 3)).copy()
        else:
            frame = np.clip(base * levels[t] * texture, 0, 255)
        box = frame[y0:y1, x0:x1]
        box[:] = (box * (1 - alpha_body) + fg * alpha_body) * (1 - alpha_dot) + marker * alpha_dot
        frame += noise.normal(0, config.pixel_noise, frame.shape)
        video[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        masks[t, y0:y1, x0:x1] = alpha_body[..., 0] >= 0.5
    return video, masks


# --- writing a dataset ----------------------------------------------------------------------


def _write_one(job: tuple[dict, str, int, str]) -> dict:
    config_dict, split, index, out = job
    config = SynthConfig(**config_dict)
    params = draw_video_params(config, split, index)
    video, masks = render_video(config, params)
    video_id = f"{split}_{index:05d}"
    video_path = Path(out) / "videos" / split / f"{video_id}.mp4"
    mask_path = Path(out) / "masks" / split / f"{video_id}.npz"
    write_video(video_path, video, fps=config.fps, crf=config.crf)
    np.savez_compressed(mask_path, mask=masks)
    return {"id": video_id, "params": params}


def manifest_for(config: SynthConfig) -> dict:
    """The manifest.json content of a dataset made with `config` (without its measured summary).

    Args:
        config: the dataset's parameters.

    Returns:
        dict with the generator name and version, every parameter, the factor values and kinds,
        the label factor and the file layout.
    """
    factors = config.factors()
    return {
        "generator": SYNTHETIC_GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "vdiag_version": __version__,
        "parameters": asdict(config),
        "factors": factors,
        "factor_kinds": FACTOR_KINDS,
        "label_factor": config.label_factor,
        "class_names": factors[config.label_factor],
        "files": {
            "labels": "labels.csv",
            "params": "params.jsonl",
            "videos": "videos/<split>/<id>.mp4",
            "masks": "masks/<split>/<id>.npz (key 'mask': bool T×H×W)",
        },
    }


def generate_dataset(config: SynthConfig, out: str | Path | None = None, workers: int | None = None, overwrite: bool = False) -> dict:
    """Write the dataset to `out` (default: the cache folder) and return a summary.

    If `out` already holds a dataset with the same parameters, nothing is regenerated. The folder is
    written beside its final name and renamed when complete, so an interrupted run leaves nothing
    half-written under `out`.

    Args:
        config: every parameter of the dataset (validated first).
        out: destination folder; default: a cache folder named by the parameters.
        workers: processes that render videos (default: up to 8, one per CPU).
        overwrite: replace a dataset with other parameters already at `out`.

    Returns:
        dict with `out`, `reused`, per-split `counts`, the achieved `correlation`, and timing.

    Raises:
        VdiagError: bad parameters, `out` holding a dataset with other parameters (without
            `overwrite`), or `out` being a non-empty folder that is not a synthetic dataset.
    """
    config.validate()
    out = Path(out).expanduser() if out else default_dataset_dir(config)
    manifest = manifest_for(config)
    existing = _read_manifest(out)
    if existing is not None and not overwrite:
        if (
            _identity(existing.get("parameters", {})) == _identity(manifest["parameters"])
            and existing.get("generator_version") == GENERATOR_VERSION
        ):
            return {"out": str(out), "reused": True, **existing.get("summary", {})}
        raise VdiagError(f"{out} already holds a synthetic dataset with other parameters; pass --overwrite or choose another --out")
    if existing is None and out.exists() and any(out.iterdir()):
        raise VdiagError(f"{out} exists and is not a vdiag synthetic dataset; choose an empty or new --out")

    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(asdict(config), split, i) for split, count in config.counts().items() for i in range(count)]
    started = time.perf_counter()
    with atomic_dir(out) as tmp:
        for split in SPLIT_CODES:
            (tmp / "videos" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
        rows: dict[str, dict] = {}
        with progress_bar("videos") as progress:
            task = progress.add_task("generating videos", total=len(jobs))
            if workers == 1:
                for job in jobs:
                    result = _write_one((*job, str(tmp)))
                    rows[result["id"]] = result["params"]
                    progress.advance(task)
            else:
                with ProcessPoolExecutor(workers) as pool:
                    for result in pool.map(_write_one, [(*job, str(tmp)) for job in jobs], chunksize=8):
                        rows[result["id"]] = result["params"]
                        progress.advance(task)
        seconds = time.perf_counter() - started
        ordered = [rows[f"{split}_{i:05d}"] | {"id": f"{split}_{i:05d}"} for _, split, i in jobs]
        _write_tables(tmp, config, ordered)
        summary = {
            "counts": config.counts(),
            "correlation": achieved_correlation(config, ordered),
            "seconds": round(seconds, 2),
            "videos_per_second": round(len(jobs) / max(seconds, 1e-9), 2),
            "workers": workers,
        }
        manifest["summary"] = summary
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"out": str(out), "reused": False, **summary}


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("generator") == SYNTHETIC_GENERATOR else None


def _write_tables(out: Path, config: SynthConfig, rows: list[dict]) -> None:
    names = list(FACTOR_KINDS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "path", "split", "label", *names])
    for row in rows:
        writer.writerow(
            [
                row["id"],
                f"videos/{row['split']}/{row['id']}.mp4",
                row["split"],
                row["factors"][config.label_factor],
                *(row["factors"][n] for n in names),
            ]
        )
    (out / "labels.csv").write_text(buffer.getvalue())
    with open(out / "params.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def achieved_correlation(config: SynthConfig, rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per split and per (dynamic, static) pair: agreement rate and Cramér's V of the value indices."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLIT_CODES:
        split_rows = [r for r in rows if r["split"] == split]
        if not split_rows:
            continue
        stats = {}
        for dynamic, static in config.pairing.items():
            d = np.array([r["factor_index"][dynamic] for r in split_rows])
            s = np.array([r["factor_index"][static] for r in split_rows])
            n_d = len(getattr(config, dynamic))
            stats[f"{dynamic}~{static}:agreement"] = round(float(np.mean(d == s % n_d)), 4)
            stats[f"{dynamic}~{static}:cramers_v"] = round(cramers_v(d, s), 4)
        out[split] = stats
    return out


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V of two categorical samples (0: independent, 1: one determines the other)."""
    _, a_idx = np.unique(a, return_inverse=True)
    _, b_idx = np.unique(b, return_inverse=True)
    table = np.zeros((a_idx.max() + 1, b_idx.max() + 1))
    np.add.at(table, (a_idx, b_idx), 1)
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / (n * (min(table.shape) - 1)))


def load_mask(dataset_root: str | Path, video_id: str) -> np.ndarray:
    """The foreground masks of one video of a synthetic dataset.

    Args:
        dataset_root: the dataset's folder.
        video_id: the video's id, e.g. `test_00003`.

    Returns:
        bool array `(T, H, W)`, True on the foreground shape.

    Raises:
        VdiagError: no mask file for that video (not a vdiag synthetic dataset).
    """
    split = video_id.split("_")[0]
    path = Path(dataset_root) / "masks" / split / f"{video_id}.npz"
    if not path.is_file():
        raise VdiagError(f"no foreground mask at {path}; is {dataset_root} a vdiag synthetic dataset?")
    with np.load(path) as data:
        return data["mask"]
