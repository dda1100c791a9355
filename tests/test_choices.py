"""Trial lines and leaderboards show the choices that define each model, in one terminal line."""

from __future__ import annotations

from automtl.rundir.choices import MAX_CHARS, all_params, short_params


def test_structural_choices_come_first_and_fit_one_line():
    params = {"sharing": "mmoe", "experts": 4, "expert_units": 64, "trunk.depth": 2, "trunk.units": 128,
              "strategy": "joint", "weighting": "gradnorm", "gradnorm_alpha": 1.5, "learning_rate": 0.0031,
              "loss_weight.price": 2.0}
    text = short_params(params)
    assert text.startswith("mmoe(experts=4, expert_units=64), joint/gradnorm(alpha=1.5)")
    assert len(text) <= MAX_CHARS


def test_image_and_text_runs_show_their_encoders():
    image = {"image.stages": 3, "image.filters": 32, "trunk.depth": 0, "trunk.units": 64, "strategy": "joint",
             "learning_rate": 0.003}
    assert short_params(image) == "joint, conv 3x32, trunk 0x64, lr 0.003"
    text = {"text.encoder": "bigru", "trunk.depth": 1, "trunk.units": 64, "strategy": "alternating",
            "task_sampling": "proportional"}
    assert short_params(text) == "alternating(task_sampling=proportional), bigru, trunk 1x64"
    assert short_params({"image.backbone": "mobilenet_v2", "trunk.depth": 1}).startswith("backbone mobilenet_v2")


def test_only_what_the_trial_has_and_every_parameter_on_request():
    assert short_params({"learning_rate": 0.01}) == "lr 0.01"
    assert short_params({}) == ""
    assert all_params({"learning_rate": 0.0123456, "head.kind.units": 16}) == "learning_rate=0.01235, head.kind.units=16"


def test_tabular_runs_show_their_encodings_and_the_trunk_norm():
    params = {"tabular.numeric": "ple", "tabular.numeric_bins": 16, "tabular.categorical": "embedding",
              "trunk.depth": 2, "trunk.units": 128, "norm": "batch", "strategy": "joint", "learning_rate": 0.001}
    assert short_params(params) == "joint, tabular ple+embedding, trunk 2x128 batch-norm, lr 0.001"
    assert short_params({"trunk.depth": 1, "trunk.units": 64, "norm": "none"}) == "trunk 1x64"
