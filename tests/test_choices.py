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


def test_a_plugin_type_says_how_its_parameters_read(monkeypatch):
    """An input or task type's ``summary`` templates (its auto_space.yaml entry): the first whose parameters
    the trial has is shown, so a third-party type's trials read as well as the built-in ones."""
    from automtl import autospace
    from automtl.rundir import choices

    entries = [("input", "audio", {"summary": ["mel {audio.bins} bins/{audio.hop:.0f}", "mel {audio.bins} bins"]}),
               ("task", "ranking", {"summary": "listwise k={rank.k}"})]
    monkeypatch.setattr(autospace, "type_entries", lambda: entries)
    choices._summaries.cache_clear()
    try:
        assert short_params({"audio.bins": 64, "audio.hop": 0.01, "rank.k": 5}) == "mel 64 bins/0.01, listwise k=5"
        assert short_params({"audio.bins": 64, "learning_rate": 0.01}) == "mel 64 bins, lr 0.01"
        assert short_params({"tabular.numeric": "ple"}) == ""  # no type installed here says how it reads
    finally:
        choices._summaries.cache_clear()


def test_a_malformed_summary_is_refused_where_fragments_are_checked_and_never_breaks_a_trial_line(monkeypatch):
    import pytest

    from automtl import autospace
    from automtl.errors import ConfigError
    from automtl.rundir import choices

    with pytest.raises(ConfigError, match=r"fragment of input 'a' \(audio\): summary: expected a template"):
        autospace.merge([("input 'a' (audio)", {"summary": {"mel": "{audio.bins}"}})], tasks=1)
    monkeypatch.setattr(autospace, "type_entries", lambda: [("input", "audio", {"summary": {"mel": "x"}})])
    choices._summaries.cache_clear()
    try:
        assert short_params({"audio.bins": 64, "learning_rate": 0.01}) == "lr 0.01"
    finally:
        choices._summaries.cache_clear()
