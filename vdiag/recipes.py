"""The machinery under the paper recipes in `commands/`: run `vdiag` commands, collect, tabulate.

A recipe is a script that reads top to bottom as the experiment: pretrain these methods, run these
diagnostics, fill this table. It runs at two sizes:

- `--smoke`: a tiny synthetic dataset (32 px, a few dozen videos), one short epoch, two clips per
  test video; seconds per command, for the test suite and for checking a set-up. The numbers are
  not evidence of anything.
- full (default): the paper's settings (`--preset paper`, its epochs, clip length and stride) on the
  dataset given with `--data`; a GPU job.

Every command is printed as the `vdiag …` line a user could paste, and run in this process (no
second torch import per command). Each result is read back from the JSON the command writes, and
the recipe's table is written as Markdown and JSON into `--out` with the commands that made it.
`--dry-run` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from vdiag.errors import VdiagError
from vdiag.io import atomic_path

# pretraining at --smoke size: 32-px crops of 4 frames, 8 videos per step, one epoch
SMOKE_TRAIN = [
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--set",
    "data.size=32",
    "--set",
    "data.frames=4",
    "--set",
    "data.stride=2",
    "--set",
    "train.warmup_epochs=0",
]
SMOKE_DIAGNOSE = ["--clips", "2", "--workers", "0"]
SMOKE_DATA = {"train": 32, "val": 16, "test": 16}


@dataclass
class Recipe:
    """One experiment's run: options, the commands run so far, and where things go.

    Attributes:
        name: the recipe (commands/<name>.py).
        smoke: tiny synthetic run instead of the paper's settings.
        out: where runs, diagnostics and tables go.
        data, data_format: the pretraining dataset and its layout (None: synthetic / auto).
        eval_data: the evaluation datasets [the pretraining data].
        dry_run: print the commands, run nothing.
        device: "auto", "cpu" or "cuda".
        full_preset: the preset at full size ("paper", or "cpu" for synthetic experiments).
        video_root: the folder holding the pretraining dataset's videos (`--video-root`) [beside the annotations].
        commands: the `vdiag` lines run so far (written under each table).
        options: the recipe's own options (`extra_options` of `from_command_line`), by name.
    """

    name: str
    _: KW_ONLY
    smoke: bool
    out: Path
    data: str | None
    data_format: str | None
    eval_data: list[str]
    dry_run: bool
    device: str
    full_preset: str = "paper"
    video_root: str | None = None
    commands: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @classmethod
    def from_command_line(
        cls, name: str, description: str, argv: list[str] | None = None, *, synthetic: bool = False, extra_options=None
    ) -> Recipe:
        """Parse the recipe options. A `synthetic` experiment is defined on the synthetic data: at
        full size `--data` is optional (the default synthetic dataset) and the preset is `cpu`
        with the recipe's longer schedule; otherwise full size needs the real dataset and uses
        `--preset paper`.

        Args:
            name: the recipe's script name (commands/<name>.py), its default output folder.
            description: the help text (the script's docstring).
            argv: the arguments [sys.argv].
            synthetic: the experiment is defined on the synthetic data (see above).
            extra_options: a function that adds the recipe's own options to the argparse parser;
                their values land in `Recipe.options`.

        Returns:
            The `Recipe`. A usage error exits with status 2 (argparse).
        """
        parser = argparse.ArgumentParser(
            prog=f"python commands/{name}.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (seconds per command) instead of the paper's settings")
        parser.add_argument("--out", default=f"recipes/{name}", help="where runs, diagnostics and the table go [recipes/%(prog)s]")
        parser.add_argument("--data", help="pretraining dataset (folder or CSV) at full size")
        parser.add_argument("--format", dest="data_format", help="its layout (ucf101, hmdb51, csv, folder, synthetic) [auto]")
        parser.add_argument("--video-root", help="the folder holding its videos, for annotation-file layouts [beside the annotations]")
        parser.add_argument(
            "--eval-data", action="append", default=[], help="evaluation dataset(s) [the pretraining data]; repeat for several"
        )
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
        common = {action.dest for action in parser._actions}
        if extra_options is not None:
            extra_options(parser)
        args = parser.parse_args(argv)
        if not args.smoke and not synthetic and not args.data:
            parser.error("at full size this experiment needs the real dataset: --data PATH (or --smoke for a tiny synthetic run)")
        preset = "cpu" if synthetic else "paper"
        return cls(
            name,
            smoke=args.smoke,
            out=Path(args.out),
            data=args.data,
            data_format=args.data_format,
            eval_data=args.eval_data,
            dry_run=args.dry_run,
            device=args.device,
            full_preset=preset,
            video_root=args.video_root,
            options={key: value for key, value in vars(args).items() if key not in common},
        )

    # --- running vdiag -------------------------------------------------------------------------

    def vdiag(self, *args: str) -> None:
        """Run one `vdiag` command in this process (printed first, as a line a user could paste).

        Raises:
            VdiagError: the command exited non-zero (its own one-line message was printed).
        """
        argv = (["--device", self.device] if self.device != "auto" else []) + [str(a) for a in args]
        line = "vdiag " + shlex.join(argv)
        self.commands.append(line)
        print(f"$ {line}", file=sys.stderr, flush=True)
        if self.dry_run:
            return
        from vdiag.cli.main import main

        try:
            main(argv)
        except SystemExit as exit:
            if exit.code not in (0, None):
                raise VdiagError(f"recipe {self.name} stopped: the vdiag command above exited with status {exit.code}") from None

    def dataset(self) -> str | None:
        """The pretraining dataset: at --smoke size a tiny synthetic one made here (once); None =
        the default synthetic dataset."""
        if not self.smoke:
            return self.data
        folder = self.out / "synthetic"
        if not (folder / "manifest.json").is_file():
            counts = [f"--num-{split}={count}" for split, count in SMOKE_DATA.items()]
            # four trajectories: enough classes for retrieval R@k and top-k silhouettes to mean something
            self.vdiag(
                "synth-dataset", "--out", folder, "--size", "32", "--frames", "8", "--trajectories", "rotation,linear,orbit,bounce", *counts
            )
        return str(folder)

    def evaluation_sets(self) -> list[str | None]:
        """Datasets the diagnostics run on: --eval-data, else the pretraining data."""
        if self.smoke or not self.eval_data:
            return [self.dataset()]
        return self.eval_data

    def pretrain(self, run: str, method: str, *options: str, full: tuple[str, ...] = ()) -> str:
        """Pretrain `method` into <out>/runs/<run>; returns the checkpoint path. `full` holds the
        options used only at full size (the paper's epochs, clip length, …)."""
        folder = self.out / "runs" / run
        checkpoint = folder / "final.pt"
        if checkpoint.is_file() and not self.dry_run:
            print(f"# {checkpoint} exists: reused (delete it to train again)", file=sys.stderr)
            self.commands.append(f"# reused {checkpoint}")
            return str(checkpoint)
        size = SMOKE_TRAIN if self.smoke else ["--preset", self.full_preset, *full]
        self.vdiag("pretrain", "--method", method, *self._data_options(self.dataset()), *options, *size, "--out", folder)
        return str(checkpoint)

    def diagnose(self, command: str, checkpoint: str, *options: str, data: str | None = None, tag: str = "") -> dict:
        """Run `vdiag <command> CHECKPOINT` (e.g. "probe static-bias") and return its metrics.
        `tag` keeps the results of several runs of one command apart (another --feature, …)."""
        words = command.split()
        run = Path(checkpoint).parent.name
        data = data or self.evaluation_sets()[0]
        folder = self.out / "diagnostics" / self.dataset_name(data) / run / (words[-1] + (f"-{tag}" if tag else ""))
        size = SMOKE_DIAGNOSE if self.smoke else []
        self.vdiag(*words, checkpoint, *self._data_options(data), *options, *size, "--out", folder)
        if self.dry_run:
            return {}
        return json.loads((folder / f"{words[-1]}.json").read_text())["metrics"]

    def row(self, name: str, data: str | None) -> str:
        """A table row's name, with the evaluation dataset's when there are several."""
        return name if len(self.evaluation_sets()) == 1 else f"{name} ({self.dataset_name(data)})"

    @staticmethod
    def dataset_name(data: str | None) -> str:
        return Path(data).name if data else "synthetic-default"

    def _data_options(self, data: str | None) -> list[str]:
        if not data:
            return []
        own = data == self.data
        return (
            ["--data", data]
            + (["--format", self.data_format] if self.data_format and own else [])
            + (["--video-root", self.video_root] if self.video_root and own else [])
        )

    # --- the table ----------------------------------------------------------------------------

    def table(
        self,
        title: str,
        columns: list[str],
        rows: list[tuple[str, list]],
        *,
        paper: list[tuple[str, list]] | None = None,
        paper_columns: list[str] | None = None,
        note: str = "",
        name: str | None = None,
    ) -> Path | None:
        """Write <out>/<name>.md and .json: our rows beside the paper's (values already rounded
        with `percent` or `score`; None prints as "–"). `paper_columns` when the paper's layout
        differs from ours; `name` for a recipe with several tables [the recipe's]. Returns the
        Markdown path."""
        if self.dry_run:
            return None
        size = "smoke (tiny synthetic data, one short epoch: not evidence)" if self.smoke else "full (the paper's settings)"
        lines = [f"# {title}", "", f"Size: {size}.", ""]
        lines += _markdown_table(["run", *columns], [(row, [_cell(v) for v in values]) for row, values in rows])
        if paper:
            lines += ["", "The paper's numbers:", ""]
            lines += _markdown_table(["paper", *(paper_columns or columns)], [(row, [_cell(v) for v in values]) for row, values in paper])
        if note:
            lines += ["", note]
        lines += ["", "Commands:", "", "```bash", *self.commands, "```", ""]
        name = name or self.name
        markdown, payload = self.out / f"{name}.md", self.out / f"{name}.json"
        record = {
            "recipe": self.name,
            "table": name,
            "title": title,
            "size": "smoke" if self.smoke else "full",
            "columns": columns,
            "rows": [{"run": row, "values": values} for row, values in rows],
            "paper_columns": paper_columns or columns,
            "paper": [{"run": row, "values": values} for row, values in paper or []],
            "note": note,
            "commands": self.commands,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(markdown) as tmp:
            tmp.write_text("\n".join(lines))
        with atomic_path(payload) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        print("\n".join(lines[: lines.index("Commands:")]))
        print(f"wrote {markdown}\n      {payload}", file=sys.stderr)
        return markdown


T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # Student t, 97.5 % quantile, by degrees of freedom


def seed_interval(values) -> dict:
    """Mean and 95 % Student-t half-width of one metric over seeds (None values left out).

    Returns:
        {"mean", "half_width", "n"}: mean None for no value, half-width None for one.
    """
    import math
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "half_width": None, "n": 0}
    if len(values) == 1:
        return {"mean": values[0], "half_width": None, "n": 1}
    half = T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": statistics.fmean(values), "half_width": half, "n": len(values)}


def method_args(*assignments: str) -> list[str]:
    """`--set method_args.KEY=VALUE` for each "KEY=VALUE" (a method's ablation options)."""
    return [item for assignment in assignments for item in ("--set", f"method_args.{assignment}")]


def percent(value: float | None) -> float | None:
    """An accuracy in [0, 1] as the papers print it (%, one decimal)."""
    return None if value is None else round(100 * value, 1)


def score(value: float | None) -> float | None:
    """A score printed with three decimals (silhouette, chance-normalised factor scores)."""
    return None if value is None else round(value, 3)


def _cell(value) -> str:
    return "–" if value is None else str(value)


def _markdown_table(header: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows]
    return lines


def run_recipe(body) -> None:
    """Call `body()`; a VdiagError becomes one line on stderr and exit status 2."""
    try:
        body()
    except VdiagError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
