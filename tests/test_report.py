"""`vdiag report`: a well-formed, self-contained HTML file whose figures decode, and a Markdown twin."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import torch
from PIL import Image
from test_pretrain import run_cli

from vdiag.models.backbones import build_backbone

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Structure(HTMLParser):
    """Checks nesting (every opened element closed in order) and collects images and table rows."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.rows, self.header_cells = [], [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "tr":
            self.rows += 1
        if tag == "th" and self.stack[-2:] == ["thead", "tr"]:
            self.header_cells += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def test_report_html_is_self_contained_and_figures_decode(tiny_synth, tmp_path):
    root, _ = tiny_synth
    checkpoints = []
    for seed in (0, 1):  # two third-party checkpoints of one architecture (one --backbone serves both)
        torch.manual_seed(seed)
        path = tmp_path / f"seed{seed}" / "weights.pt"
        path.parent.mkdir()
        torch.save(build_backbone("tiny").body.state_dict(), path)
        checkpoints.append(str(path))
    collapsed = tmp_path / "collapsed" / "weights.pt"  # one embedding for every clip: a column without readings
    collapsed.parent.mkdir()
    state = build_backbone("tiny").body.state_dict()
    state["stem.1.weight"].zero_()
    state["stem.1.bias"].fill_(1.0)
    torch.save(state, collapsed)
    checkpoints.append(str(collapsed))
    out = tmp_path / "report"
    proc = run_cli(
        "report",
        *checkpoints,
        "--backbone",
        "tiny",
        "--data",
        str(root),
        "--clips",
        "2",
        "--frames",
        "6",
        "--size",
        "32",
        "--workers",
        "0",
        "--out",
        str(out),
        "--json",
    )
    result = json.loads(proc.stdout)
    assert result["command"] == "report" and set(result["files"]) >= {str(out / "report.html"), str(out / "report.md")}
    text = (out / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    parser = Structure()
    parser.feed(text)
    assert parser.errors == [] and parser.stack == []
    assert len(parser.images) == 3  # the t-SNE and one eigenvalue figure per readable checkpoint
    for image in parser.images:
        assert image["src"].startswith("data:image/png;base64,") and image["alt"]
        with Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1]))) as decoded:
            decoded.verify()
    # models and clips: 6 columns (a row per checkpoint); card: metric, three checkpoints; paired differences: metric, two differences
    assert parser.header_cells == 6 + 4 + 3
    assert parser.rows >= 10  # header + the card's metrics (factors included: synthetic data)
    assert "static_ratio" not in text and "static ratio" in text and "[" in text  # labels and intervals
    assert "collapsed: no reading" in text and "Paired differences" in text and 'href="' in text
    assert "synthetic" in text and "test 8 videos" in text  # the data described, the sample sizes
    markdown = (out / "report.md").read_text()
    assert markdown.count("![") == 3 and "| static ratio |" in markdown
    for line in markdown.splitlines():  # every table row has its columns: no cell text breaks the table
        if line.startswith("| ") and "collapsed: no reading" in line:
            assert line.replace("\\|", "").count("|") == 6, line  # metric, three checkpoints, reading
    assert "\\|λ\\|" in markdown and "](" in markdown.split("| static ratio |")[1].splitlines()[0]  # escaped; docs linked
    metrics = result["metrics"]
    assert "1.static-bias.static_ratio" in metrics and "0.eig.static_fraction_bolddi" in metrics
    assert {"0.static-bias.chance", "0.retrieval.chance"} <= set(metrics)  # namespaced: one no longer overwrites the other
    assert "diff.1-0.static-bias.acc_real_ci_low" in metrics and not any(k.startswith("2.") for k in metrics)
    assert list(result["details"]["refused"]) == ["2"]
    assert (out / "0-seed0" / "static-bias.json").is_file() and (out / "1-seed1" / "eig.png").is_file()
