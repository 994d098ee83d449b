"""ViDiDi Table 3, Table 6 and Table 7: retrieval and clustering with and without ViDiDi.

Table 3: nearest-neighbour video retrieval (R@1, 5, 10; test videos query the train set) for
SimCLR, BYOL, VICReg and their ViDiDi versions. Table 6: the schedule ablation on VICReg (random
derivatives as augmentation vs the scheduled pairings). Table 7: silhouette score of the top-k
best-retrieved classes. Full size: R3D-18, 8 frames every 3rd, 112 px, 400 epochs on UCF-101
(`--eval-data` UCF-101 and HMDB-51 for both retrieval columns).

    python commands/vididi_tables.py --smoke
    python commands/vididi_tables.py --data data/ucf101 --eval-data data/ucf101 --eval-data data/hmdb51
"""

from vdiag.recipes import Recipe, method_args, percent, run_recipe, score

# ViDiDi B.2–B.3: the base methods get ViDiDi's backbone and sampling (the paper preset's ViDiDi rows)
FULL = ("--backbone", "r3d_18", "--set", "data.stride=3", "--set", "data.size=112", "--epochs", "400", "--batch-size", "64")
TABLE3 = [  # (row, run folder, method)
    ("SimCLR", "simclr", "simclr"),
    ("ViDiDi-SimCLR", "vididi-simclr", "vididi-simclr"),
    ("BYOL", "byol", "byol"),
    ("ViDiDi-BYOL", "vididi-byol", "vididi-byol"),
    ("VICReg", "vicreg", "vicreg"),
    ("ViDiDi-VIC", "vididi-vicreg", "vididi-vicreg"),
]
TABLE6 = [  # (row, run folder, options on vididi-vicreg) — docs/methods/vididi.md, "Table 6 ablations"
    ("+Random 1st", "random-1", ["schedule=random", "random_max_order=1", "second_order_prob=0"]),
    ("+Random 1st & 2nd", "random-2", ["schedule=random", "random_max_order=2", "second_order_prob=0"]),
    ("Reverse ViDiDi-VIC", "reverse", ["schedule=reverse"]),
    ("+Schedule 1st", "alternate-1", ["schedule=alternate", "second_order_prob=0"]),
    ("+Schedule 1st & Mix", "alternate-mix-1", ["schedule=alternate-mix", "second_order_prob=0"]),
    ("+Schedule 1st & 2nd", "alternate-2", ["schedule=alternate"]),
    ("+Schedule 1st & 2nd & Mix", "alternate-mix-2", ["schedule=alternate-mix"]),
]
RANKS = ("R@1", "R@5", "R@10")
SILHOUETTE_K = ("3", "5", "10", "15", "20", "all")
PAPER3 = [  # pretrained on UCF-101; UCF-101 R@1, 5, 10 then HMDB-51 R@1, 5, 10
    ("SimCLR", [29.6, 41.4, 49.3, 17.5, 34.7, 45.1]),
    ("ViDiDi-SimCLR", [38.3, 54.6, 64.5, 17.5, 38.9, 52.4]),
    ("BYOL", [32.2, 43.0, 50.5, 13.8, 31.1, 44.4]),
    ("ViDiDi-BYOL", [43.7, 60.4, 70.1, 19.3, 44.1, 56.6]),
    ("VICReg", [31.1, 43.6, 50.9, 15.7, 33.7, 44.5]),
    ("ViDiDi-VIC", [47.6, 60.9, 68.6, 19.7, 40.5, 55.1]),
]
PAPER6 = [  # UCF-101 R@1, 5, 10
    ("Base (VICReg)", [31.1, 43.6, 50.9]),
    ("+Random 1st", [35.2, 47.7, 56.1]),
    ("+Random 1st & 2nd", [36.2, 48.6, 55.8]),
    ("Reverse ViDiDi-VIC", [39.1, 54.7, 62.9]),
    ("+Schedule 1st", [37.1, 50.3, 58.2]),
    ("+Schedule 1st & Mix", [39.3, 53.2, 60.9]),
    ("+Schedule 1st & 2nd", [40.7, 56.5, 64.0]),
    ("+Schedule 1st & 2nd & Mix", [43.0, 59.2, 66.6]),
    ("ViDiDi-VIC", [47.6, 60.9, 68.6]),
]
PAPER7 = [  # silhouette of the top 3, 5, 10, 15, 20, 101 classes (UCF-101)
    ("SimCLR", [0.136, 0.081, 0.048, 0.034, 0.022, -0.026]),
    ("ViDiDi-SimCLR", [0.210, 0.132, 0.096, 0.078, 0.058, 0.003]),
    ("BYOL", [0.038, -0.086, -0.094, 0.091, -0.080, -0.186]),
    ("ViDiDi-BYOL", [0.185, 0.230, 0.128, 0.107, 0.070, 0.004]),
    ("VICReg", [0.110, 0.069, 0.044, 0.036, 0.017, -0.038]),
    ("ViDiDi-VIC", [0.235, 0.232, 0.150, 0.138, 0.098, 0.014]),
]


def retrieval_row(recipe, checkpoint, sets):
    values = []
    for data in sets:
        hits = recipe.diagnose("eval retrieval", checkpoint, data=data)
        values += [percent(hits.get(rank)) for rank in RANKS]
    return values


def main():
    recipe = Recipe.from_command_line("vididi_tables", __doc__)
    sets = recipe.evaluation_sets()
    columns = [f"{recipe.dataset_name(data)} {rank}" for data in sets for rank in RANKS]
    base = {row: recipe.pretrain(run, method, full=FULL) for row, run, method in TABLE3}

    recipe.table(
        "ViDiDi Table 3: video retrieval (%)",
        columns,
        [(row, retrieval_row(recipe, checkpoint, sets)) for row, checkpoint in base.items()],
        paper=PAPER3,
        paper_columns=[f"{name} {rank}" for name in ("UCF101", "HMDB51") for rank in RANKS],
        name="vididi_table3",
    )

    ablations = {"Base (VICReg)": base["VICReg"]}
    for row, run, options in TABLE6:
        ablations[row] = recipe.pretrain(run, "vididi-vicreg", *method_args(*options), full=FULL)
    ablations["ViDiDi-VIC"] = base["ViDiDi-VIC"]
    recipe.table(
        "ViDiDi Table 6: the schedule ablation, retrieval (%)",
        columns[: len(RANKS)],
        [(row, retrieval_row(recipe, checkpoint, sets[:1])) for row, checkpoint in ablations.items()],
        paper=PAPER6,
        paper_columns=[f"UCF101 {rank}" for rank in RANKS],
        name="vididi_table6",
    )

    rows = []
    for row, checkpoint in base.items():
        scores = recipe.diagnose("eval cluster", checkpoint, data=sets[0])
        rows.append((row, [score(scores.get(f"silhouette@{k}")) for k in SILHOUETTE_K]))
    recipe.table(
        "ViDiDi Table 7: silhouette score of the top-k best-retrieved classes",
        [f"top {k}" if k != "all" else "all classes" for k in SILHOUETTE_K],
        rows,
        paper=PAPER7,
        paper_columns=["top 3", "top 5", "top 10", "top 15", "top 20", "all 101"],
        note="Columns with more classes than the dataset has are empty (–).",
        name="vididi_table7",
    )


if __name__ == "__main__":
    run_recipe(main)
