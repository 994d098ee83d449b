"""Concepts Table 3: what do the static and dynamic concepts carry?

One concepts model; a linear probe on each of its outputs: the pooled feature v, the concept codes
q_v (all, static q_v^s, dynamic q_v^d), and the local features F_v of the top-10 % concepts (all,
static, dynamic). The paper: codes lose a little to v, F_v matches or beats it; on UCF-101 and
HMDB-51 static and dynamic concepts matter about equally; on Diving-48 (same scenes, different
motions) the static ones are nearly useless. Full size: R(2+1)D-18, 16 × 112, 200 epochs
(the paper pretrains on Kinetics-400 for UCF-101 / HMDB-51 and on Diving-48 for Diving-48).

    python commands/concepts_table3.py --smoke
    python commands/concepts_table3.py --data k400 --format csv --eval-data data/ucf101 --eval-data data/hmdb51
"""

from vdiag.catalog import CONCEPT_FEATURES
from vdiag.recipes import Recipe, percent, run_recipe

FULL = ("--epochs", "200")
PAPER = [
    ("UCF-101", [72.1, 66.3, 61.4, 62.6, 72.7, 68.3, 69.8]),
    ("HMDB-51", [45.9, 43.8, 42.9, 40.1, 46.3, 45.7, 44.2]),
    ("Diving-48", [73.4, 59.4, 26.7, 64.8, 72.5, 31.1, 74.1]),
]
COLUMNS = ["v", "q_v", "q_v^s", "q_v^d", "F_v", "F_v^s", "F_v^d"]  # CONCEPT_FEATURES in the paper's notation


def main():
    recipe = Recipe.from_command_line("concepts_table3", __doc__)
    checkpoint = recipe.pretrain("concepts", "concepts", full=FULL)
    rows = []
    for data in recipe.evaluation_sets():
        values = []
        for feature in CONCEPT_FEATURES:
            probe = recipe.diagnose("eval linear", checkpoint, "--feature", feature, data=data, tag=feature)
            values.append(percent(probe.get("top1")))
        rows.append((recipe.dataset_name(data), values))
    recipe.table(
        "Concepts Table 3: linear probes on the model's outputs (top-1 %)",
        COLUMNS,
        rows,
        paper=PAPER,
        note="Rows are evaluation datasets. F_v averages the local features of the top 10 % concepts of q_v.",
    )


if __name__ == "__main__":
    run_recipe(main)
