"""`vdiag demo`."""

from __future__ import annotations

import click

from vdiag.cli.common import emit, json_option, resolve_device


def _card(result):
    from vdiag.report.card import card_table

    return card_table(result)


@click.command(
    epilog="""\b
Examples:
  vdiag demo                                   # ~4 min on 2 CPU cores; files in ./vdiag-demo
  vdiag demo --out my-demo --epochs 8          # longer pretraining
  vdiag demo --size 64 --num-train 1000        # a bigger benchmark (the shortcut was measured at the default)
  vdiag --device cuda demo --size 64 --num-train 1000 --epochs 20   # on a GPU""",
)
@click.option("--out", type=click.Path(file_okay=False), default="vdiag-demo", show_default=True, help="Where the demo writes its files.")
@click.option(
    "--data", type=click.Path(file_okay=False), default=None, help="Synthetic dataset folder [the cache's dataset for these parameters]."
)
@click.option("--size", type=click.IntRange(32), default=32, show_default=True, help="Frame side of the synthetic videos (even).")
@click.option(
    "--num-train", type=click.IntRange(8), default=400, show_default=True, help="Training videos (val and test: half as many each)."
)
@click.option("--epochs", type=click.IntRange(1), default=4, show_default=True, help="Pretraining epochs, the same for every run.")
@click.option("--clips", type=click.IntRange(1), default=2, show_default=True, help="Clips per test video in the diagnostics.")
@json_option
@click.pass_obj
def demo(settings, out, data, size, num_train, epochs, clips, as_json):
    """The papers' core finding end to end: does plain contrastive learning take the static
    shortcut on confounded data, and do the decoupling methods recover motion?

    Generates the static-shortcut benchmark (docs/static-shortcut.md) and its unconfounded twin,
    pretrains a static and a dynamic supervised reference (on the twin), v-SimCLR, ViDiDi-SimCLR,
    DCLR, concepts and BOLD-DI-SimCLR with the benchmark's static-shortcut preset, runs the
    diagnostics and writes <out>/report/report.html. Run it again to continue after an
    interruption: finished runs are reused, an interrupted one resumes.
    """
    from vdiag.demo import DemoSettings, run_demo

    demo_settings = DemoSettings(
        size=size, num_train=num_train, num_val=num_train // 2, num_test=num_train // 2, epochs=epochs, clips=clips
    )
    result = run_demo(out, demo_settings, data=data, seed=settings.seed, device=resolve_device(settings.device), decoder=settings.decoder)
    minutes = result.details["seconds"]["total"] / 60
    footer = [f"report: {result.files[0]}", f"        {result.files[1]}", f"summary: {out}/demo.json   ({minutes:.1f} min)"]
    emit(result, as_json, _card(result) if not as_json else None, footer=footer)
