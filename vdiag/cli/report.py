"""`vdiag report`: the diagnostics of several checkpoints side by side (HTML + Markdown)."""

from __future__ import annotations

import click

from vdiag.cli.diagnose import COMMON_EPILOG, diagnostic_options, run_diagnostic


def _card(result):
    from vdiag.report.card import card_table

    return card_table(result)


@click.command(
    "report",
    epilog="""\b
Examples:
  vdiag report runs/simclr-tiny/final.pt runs/dclr-tiny/final.pt --out reports/simclr-vs-dclr
  vdiag report runs/simclr-tiny/final.pt --clips 2          # quicker: 2 clips per video
  vdiag report a.pth b.pth --backbone r3d_18 --data data/ucf101      # one architecture for both
  # three architectures, each at its published clips (r3d_18 16×2 112 px, slow_r50 8×8 224 px,
  # the VideoMAE folder's config.json), on the same test videos:
  vdiag report r3d.pth=r3d_18 rho_moco.pyth=slow_r50 ./videomae-base/ --data data/ucf101
  vdiag report r3d.pth=r3d_18 rho_moco.pyth=slow_r50 --data data/ucf101 --frames 8 --stride 8,8 --size 112,224

A checkpoint is PATH or PATH=BACKBONE (its architecture; --backbone serves every checkpoint given
without one; a vdiag checkpoint or a Hugging Face folder needs none). --frames, --stride and --size
take one value for all checkpoints or one per checkpoint in order (- keeps that one's own).
"""
    + COMMON_EPILOG
    + " With several checkpoints, the data is the first one's unless --data is given.",
)
@diagnostic_options(data_format_flag="--format", many=True)
@run_diagnostic("report", many=True, table=_card)
def report_command(extractors, data, out, device):
    """One report card for one or more checkpoints: static-bias, shuffle, factors, retrieval,
    silhouette and Koopman static fractions side by side with 95% intervals and chance levels, the
    figures, and how to read each number; with several checkpoints, paired differences with the
    first (paired bootstrap over the same test videos). The checkpoints may be of different
    architectures, each at its own clips (frames, stride, size, normalisation: a row per checkpoint
    above the card). A collapsed model gets a column "collapsed: no reading". Writes report.html
    (self-contained), report.md and report.json; opens nothing.
    """
    from vdiag.report.card import build_report

    return build_report(extractors, data, out)
