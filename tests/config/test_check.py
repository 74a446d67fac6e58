import pytest
from pydantic import ValidationError

from llavaforge.config.check import CheckConfig, CheckSwitch


def test_every_check_field_is_documented():
    def walk(model):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)
            assert info.description, f"{model.__name__}.{name}"
    walk(CheckConfig)


def test_new_checks_are_switches_that_reject_by_default():
    config = CheckConfig()
    for switch in (config.gibberish, config.injection, config.prompt_leakage):
        assert isinstance(switch, CheckSwitch) and switch.enabled and switch.severity == "reject"


@pytest.mark.parametrize("override", [{"repetition": {"max_phrase_coverage": 0}},
                                      {"gibberish": {"max_unknown_ratio": 1.5}},
                                      {"injection": {"min_echoed_words": 1}}])
def test_out_of_range_parameters_are_refused(override):
    with pytest.raises(ValidationError):
        CheckConfig.model_validate(override)
