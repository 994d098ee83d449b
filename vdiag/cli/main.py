"""The `vdiag` root command: global options, the command list, and one-line user errors."""

from __future__ import annotations

import os
import sys
import traceback

import click

from vdiag import __version__
from vdiag.cli.common import Settings
from vdiag.console import console, error, set_quiet
from vdiag.errors import ExitCode, Preempted, VdiagError


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  vdiag pretrain --method simclr       # train on the synthetic data (minutes on a CPU)
  vdiag probe static-bias runs/simclr-tiny/final.pt   # appearance or motion?
  vdiag eval retrieval runs/simclr-tiny/final.pt       # R@k on the checkpoint's data
  vdiag viz eig runs/simclr-tiny/final.pt              # Koopman eigenvalues of per-frame features
  vdiag report runs/simclr-tiny/final.pt runs/dclr-tiny/final.pt   # side-by-side HTML report card
  vdiag synth-dataset --preview        # the synthetic static/dynamic dataset
  vdiag doctor                         # check decoders, versions, CUDA
  vdiag cache verify                   # cached features / frame indexes still match their sources?
  vdiag demo                           # the whole story on this machine

Set VDIAG_DEBUG=1 to see tracebacks; VDIAG_CACHE_DIR moves the cache (default ~/.cache/vdiag).""",
)
@click.version_option(__version__, "--version", prog_name="vdiag")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where models run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for everything a command draws.")
@click.option(
    "--decoder",
    type=click.Choice(["auto", "decord", "pyav"]),
    default="auto",
    show_default=True,
    help="Video decoder; auto = decord, falling back to PyAV per file.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes (results and errors still print).")
@click.pass_context
def cli(ctx: click.Context, device: str, seed: int, decoder: str, quiet: bool) -> None:
    """vdiag: has your video model learned appearance or motion?

    Pretrain self-supervised video models, and diagnose any checkpoint with the static-clip,
    shuffled-order, factor and Koopman tests of the papers, on real videos or on synthetic data
    where the truth is known.
    """
    set_quiet(quiet)
    ctx.obj = Settings(device=device, seed=seed, decoder=decoder, quiet=quiet)


def _register() -> None:
    from vdiag.cli.cache import cache_group
    from vdiag.cli.demo import demo
    from vdiag.cli.diagnose import evaluate, probe
    from vdiag.cli.doctor import doctor
    from vdiag.cli.pretrain import pretrain
    from vdiag.cli.report import report_command
    from vdiag.cli.synth import synth_dataset
    from vdiag.cli.validate import validate
    from vdiag.cli.viz import viz

    for command in (pretrain, probe, evaluate, viz, report_command, validate, synth_dataset, doctor, demo, cache_group):
        cli.add_command(command)
    cli.add_command(__import__("vdiag.cli.check_data", fromlist=["check_data_command"]).check_data_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; user errors print one line and exit non-zero."""
    debug = os.environ.get("VDIAG_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=argv, prog_name="vdiag", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        console.print("interrupted", highlight=False, markup=False)
        sys.exit(ExitCode.INTERRUPTED)
    except Preempted as err:
        error(str(err), label="preempted")
        sys.exit(ExitCode.PREEMPTED)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except VdiagError as err:
        if debug:
            traceback.print_exc()
        error(str(err))
        sys.exit(getattr(err, "exit_code", ExitCode.USER_ERROR))
    except OSError as err:
        if debug:
            traceback.print_exc()
        where = f" {err.filename}" if err.filename else ""
        error(f"cannot access{where}: {err.strerror or err}")
        sys.exit(ExitCode.USER_ERROR)
    except Exception as err:  # a bug in vdiag, not the user's fault: say so, briefly
        if debug:
            raise
        error(
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
            "(run again with VDIAG_DEBUG=1 for the traceback, and please report it)",
            label="internal error",
        )
        sys.exit(ExitCode.INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
