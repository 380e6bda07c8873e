"""Configs: presets, --set overrides with type checks, helpful errors, YAML round trip."""

import pytest

from bertforge.config import RunConfig, build_config, list_presets, load_config, parse_overrides, save_config
from bertforge.errors import ConfigError


def test_presets_are_yaml_data_and_all_load():
    assert {"tiny", "small", "kantai", "bert-base", "bert-large"} <= set(list_presets())
    for name in list_presets():
        assert isinstance(build_config(preset=name), RunConfig)


def test_overrides_win_over_preset_and_are_typed():
    cfg = build_config(preset="small", overrides=["model.num_layers=2", "train.lr=3e-4", "masking.whole_word=true"])
    assert cfg.model.num_layers == 2 and cfg.train.lr == 3e-4 and cfg.masking.whole_word is True
    assert cfg.model.hidden_size == 256  # untouched preset value


def test_unknown_key_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean 'num_layers'"):
        build_config(overrides=["model.num_layer=2"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="model.num_layers must be an integer"):
        build_config(overrides=["model.num_layers=two"])


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="small"):
        build_config(preset="medium")


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])


def test_config_round_trips_through_yaml(tmp_path):
    cfg = build_config(preset="kantai", overrides=["train.lr=2e-4"])
    save_config(tmp_path / "c.yaml", cfg)
    assert load_config(tmp_path / "c.yaml") == cfg
