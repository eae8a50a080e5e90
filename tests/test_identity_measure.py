"""The identity measure option: `--identity` (dlib), `--identity arcface:PATH`, YAML's
`identity_metric: true` as before; each spec checked in one sentence."""
from __future__ import annotations

import argparse

import pytest

from gankit.identity import measure_name, measure_spec
from jobs.config import ConfigError, add_flags, config_from_dict, from_args
from jobs.edit import EditConfig
from jobs.invert import InvertConfig


def parsed(cls, words: list):
    parser = argparse.ArgumentParser()
    add_flags(parser, cls)
    return from_args(cls, parser.parse_args(words))


@pytest.mark.parametrize("value, spec", [(True, "dlib"), ("dlib", "dlib"), (None, None),
                                         (False, None), ("arcface:/m/ir.pth", "arcface:/m/ir.pth")])
def test_measure_specs(value, spec):
    assert measure_spec(value) == spec


@pytest.mark.parametrize("value", ["arcface:", "vgg", 3])
def test_a_bad_measure_is_one_sentence(value):
    with pytest.raises(ValueError, match="is not an identity measure"):
        measure_spec(value)


def test_the_flag_alone_is_dlib_and_takes_an_arcface_path():
    base = ["--images", "in", "--out", "o"]
    assert parsed(InvertConfig, base + ["--identity"]).identity_measure() == "dlib"
    cfg = parsed(InvertConfig, base + ["--identity", "arcface:ir.pth"])
    assert cfg.identity_measure() == "arcface:ir.pth"
    assert parsed(InvertConfig, base).identity_measure() is None


def test_yaml_true_still_means_dlib_and_the_identity_of_older_outputs_is_kept():
    old = config_from_dict(InvertConfig, {"images": "in", "out": "o", "identity_metric": True})
    assert old.identity_measure() == "dlib"
    assert old.identity("fp32")["identity_metric"] is True       # as older manifests say
    arc = config_from_dict(EditConfig, {"latents": "in", "out": "o", "boundaries": ["w/x"],
                                        "identity_metric": "arcface:ir.pth"})
    assert arc.identity_key() == {"identity_metric": "arcface:ir.pth"}
    assert measure_name(arc.identity_measure()) == "arcface"


def test_a_bad_measure_in_a_config_names_the_field():
    with pytest.raises(ConfigError, match="identity_metric is not usable"):
        config_from_dict(InvertConfig, {"images": "in", "out": "o", "identity_metric": "vgg"})


def test_missing_arcface_weights_fail_before_any_work(tmp_path):
    cfg = InvertConfig(images="in", out="o", identity_metric=f"arcface:{tmp_path}/none.pth")
    with pytest.raises(FileNotFoundError, match="no such ArcFace weights file"):
        cfg.check_identity_measure()
