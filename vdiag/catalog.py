"""Names of the methods and backbones, importable without torch, for the CLI's choices.

`vdiag --help` and `vdiag --version` should not pay torch's two-second import. The classes live in
`vdiag.methods.METHODS` and `vdiag.models.BACKBONES`; a test keeps these names in step with them.
"""

METHOD_NAMES = (
    "simclr",
    "moco",
    "byol",
    "swav",
    "vicreg",
    "supervised",
    "vididi-simclr",
    "vididi-byol",
    "vididi-vicreg",
    "dclr",
    "concepts",
    "bolddi-simclr",
    "bolddi-moco",
    "bolddi-byol",
    "bolddi-swav",
    "bodvcl-simclr",
    "bodvcl-byol",
    "bodvcl-moco",
)
BACKBONE_NAMES = (
    "tiny",
    "tiny2d",
    "r3d_18",
    "r2plus1d_18",
    "mc3_18",
    "s3d",
    "mvit_v1_b",
    "mvit_v2_s",
    "swin3d_t",
    "swin3d_s",
    "swin3d_b",
    "slow_r50",
    "slowfast_r50",
    "x3d_xs",
    "x3d_s",
    "x3d_m",
    "x3d_l",
    "csn_r101",
    "i3d_r50",
    "c2d_r50",
    "r2plus1d_r50",
    "mvit_base_16x4",
)

# the features the concepts paper probes in Table 3 (`Concepts.concept_outputs`)
CONCEPT_FEATURES = ("v", "q_v", "q_v_static", "q_v_dynamic", "F_v", "F_v_static", "F_v_dynamic")
