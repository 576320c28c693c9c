"""Unit tests of the environment readers used by config.settings."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_env_bool_reads_true_words(raw):
    assert env_bool("X", False, environ={"X": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", ""])
def test_env_bool_reads_false_words(raw):
    assert env_bool("X", True, environ={"X": raw}) is False


def test_env_bool_rejects_other_words_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", False, environ={"DEBUG": "maybe"})


def test_unset_variables_give_their_defaults():
    assert env_bool("X", True, environ={}) is True
    assert env_int("X", 7, environ={}) == 7
    assert env_str("X", "d", environ={}) == "d"
    assert env_list("X", ["a"], environ={}) == ["a"]


def test_env_int_parses_and_enforces_minimum():
    assert env_int("N", 1, environ={"N": " 42 "}) == 42
    with pytest.raises(ImproperlyConfigured, match="N='4x' is not an integer"):
        env_int("N", 1, environ={"N": "4x"})
    with pytest.raises(ImproperlyConfigured, match="N=0 must be at least 1"):
        env_int("N", 1, minimum=1, environ={"N": "0"})


def test_env_list_splits_on_commas_and_drops_blanks():
    assert env_list("Q", [], environ={"Q": "default, high,,low "}) == ["default", "high", "low"]
