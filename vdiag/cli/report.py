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
    first (paired bootstrap over the same test videos). A collapsed model gets a column "collapsed:
    no reading". Writes report.html (self-contained), report.md and report.json; opens nothing.
    """
    from vdiag.report.card import build_report

    return build_report(extractors, data, out)
