"""BOLD-DI Table 5 and Table 14: bi-level vs single level, and the components.

v-SimCLR; v-SimCLR + L_dynamic (outer loss only, no inner problem); v-SimCLR + L_(f,do) (the
backdoor-adjusted inner problem without L_dynamic); v-SimCLR + BOLD-DI (both, bi-level); and
v-SimCLR* (Table 5: L_cl, L_dynamic and L_backdoor minimised together, single level). Linear
probe on frozen features. Full size: Slow-R50, L = 8, δ = 8, ρ = 2, 200 epochs on Kinetics-400.

    python commands/bolddi_ablation.py --smoke
    python commands/bolddi_ablation.py --data k400 --format csv
"""

from vdiag.recipes import Recipe, method_args, percent, run_recipe

RUNS = [  # (row, run folder, method, options) — docs/methods/bolddi.md maps each row to its options
    ("v-SimCLR", "simclr", "simclr", ()),
    ("v-SimCLR + L_dynamic", "dynamic-only", "bolddi-simclr", ("inner_steps=0",)),
    ("v-SimCLR + L_(f,do)", "backdoor-only", "bolddi-simclr", ("dynamic_weight=0",)),
    ("v-SimCLR + BOLD-DI", "bolddi", "bolddi-simclr", ()),
    ("v-SimCLR* (single level, Table 5)", "single-level", "bolddi-simclr", ("single_level=true",)),
]
FULL = ("--epochs", "200")
PAPER = [  # Table 14: K400 linear; UCF-101 and HMDB-51 fine-tuned. Table 5: K400 linear only
    ("v-SimCLR", [60.5, 88.9, 67.2]),
    ("v-SimCLR + L_dynamic", [61.2, 89.7, 69.2]),
    ("v-SimCLR + L_(f,do)", [61.1, 89.5, 68.4]),
    ("v-SimCLR + BOLD-DI", [63.7, 90.2, 70.6]),
    ("v-SimCLR* (single level, Table 5)", [61.4, None, None]),
]


def main():
    recipe = Recipe.from_command_line("bolddi_ablation", __doc__)
    checkpoints = {row: recipe.pretrain(run, method, *method_args(*options), full=FULL) for row, run, method, options in RUNS}
    sets = recipe.evaluation_sets()
    rows = []
    for row, checkpoint in checkpoints.items():
        rows.append((row, [percent(recipe.diagnose("eval linear", checkpoint, data=data).get("top1")) for data in sets]))
    recipe.table(
        "BOLD-DI Table 14 / Table 5: components and single-level optimisation (linear top-1 %)",
        [f"linear ({recipe.dataset_name(data)})" for data in sets],
        rows,
        paper=PAPER,
        paper_columns=["K400 linear", "UCF-101 fine-tuned", "HMDB-51 fine-tuned"],
        note="Ours: one linear-probe column per evaluation dataset (the paper fine-tunes for UCF-101 and HMDB-51: "
        "run `vdiag eval finetune` on these checkpoints for those columns).",
    )


if __name__ == "__main__":
    run_recipe(main)
