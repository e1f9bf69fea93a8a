from __future__ import annotations

import pickle

import pytest
from experiments import no_config

import xhelpers as xh
from xhelpers.errors import ExperimentDefinitionError, PatternError


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("/abs", "leading or trailing '/'"),
        ("trailing/", "leading or trailing '/'"),
        ("a//b", "empty segment"),
        ("a/./b", "segment '.'"),
        ("a/../../etc", "segment '..'"),
        ("..", "segment '..'"),
        ("back\\slash", "backslash or NUL"),
        ("nul\0byte", "backslash or NUL"),
        (".slurm", "reserved for xhelpers"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_bad_name_is_rejected_with_its_reason(name: str, why: str) -> None:
    with pytest.raises(ExperimentDefinitionError) as info:
        xh.ParametrizedExperiments("g", {name: no_config, "fine": no_config})
    assert repr(name) in str(info.value)
    assert why in str(info.value)
    assert info.value.offending == [name]
    assert "g" not in xh.framework.groups()  # nothing half-registered


def test_every_offending_name_is_named_at_once() -> None:
    bad = {
        "a//b": no_config,
        "some/subdir": no_config,
        "some/subdir/x": no_config,
        "/x": no_config,
        "ok/name": no_config,
    }
    with pytest.raises(ExperimentDefinitionError) as info:
        xh.ParametrizedExperiments("g", bad)
    message = str(info.value)
    assert "'a//b'" in message and "'/x'" in message
    assert "'some/subdir' (is a folder of 'some/subdir/x')" in message
    assert sorted(info.value.offending) == ["/x", "a//b", "some/subdir"]
    assert "\n" not in message


def test_leaf_rule_on_deeper_prefix() -> None:
    with pytest.raises(ExperimentDefinitionError, match="'a' \\(is a folder of 'a/b/c'\\)"):
        xh.ParametrizedExperiments("g", {"a/b/c": no_config, "a": no_config})


def test_similar_names_that_are_not_folders_are_fine() -> None:
    group = xh.ParametrizedExperiments(
        "g", {"a/b": no_config, "a/bc": no_config, "ab": no_config, "lr=0.1/seed=1": no_config}
    )
    assert len(group) == 4


def test_duplicate_group_name() -> None:
    xh.ParametrizedExperiments("dup", {"a": no_config})
    with pytest.raises(ExperimentDefinitionError, match="already registered"):
        xh.ParametrizedExperiments("dup", {"b": no_config})


def test_non_callable_values_are_named() -> None:
    with pytest.raises(ExperimentDefinitionError, match="not callable: 'x', 'y'"):
        xh.ParametrizedExperiments("g", {"x": 1, "ok": no_config, "y": "text"})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "-x", ".hidden"])
def test_bad_group_name(bad: str) -> None:
    with pytest.raises(ExperimentDefinitionError, match="invalid group name"):
        xh.ParametrizedExperiments(bad, {"a": no_config})


def test_bad_configcls() -> None:
    with pytest.raises(ExperimentDefinitionError, match="configcls"):
        xh.ParametrizedExperiments("g", {"a": no_config}, configcls=dict)  # type: ignore[arg-type]


def test_selection_wildcards_cross_slashes_and_union_keeps_order() -> None:
    group = xh.ParametrizedExperiments(
        "g",
        {
            "experiment_1": no_config,
            "experiment_42": no_config,
            "some/subdir/experiment_a": no_config,
            "some/other_1": no_config,
        },
    )
    assert group.select() == list(group.experiments)
    assert group.select("experiment_1") == ["experiment_1"]
    assert group.select("*_1") == ["experiment_1", "some/other_1"]
    assert group.select("*_42", "*_1") == ["experiment_1", "experiment_42", "some/other_1"]
    assert group.select("some/*") == ["some/subdir/experiment_a", "some/other_1"]
    assert group.select("*experiment_[a4]*") == ["experiment_42", "some/subdir/experiment_a"]
    assert group.select("experiment_1", "*_1") == ["experiment_1", "some/other_1"]


def test_pattern_without_match_suggests_closest() -> None:
    group = xh.ParametrizedExperiments(
        "g", {"experiment_1": no_config, "some/subdir/experiment_a": no_config}
    )
    with pytest.raises(PatternError) as info:
        group.select("experiment_2")
    assert "'experiment_1'" in str(info.value)
    assert info.value.pattern == "experiment_2"
    with pytest.raises(PatternError, match="'some/subdir/\\*'"):
        group.select("some/subdir")
    with pytest.raises(PatternError, match="matches 'nothing\\*'"):
        group.select("experiment_1", "nothing*")


def test_errors_pickle_with_their_attributes() -> None:
    errors = [
        ExperimentDefinitionError("m", offending=["a", "b"]),
        PatternError("m", pattern="p", suggestions=["s"]),
        xh.errors.ConfigError("m", field="f"),
        xh.errors.BackendError("m"),
    ]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == "m"
        assert copy.__dict__ == err.__dict__
        assert isinstance(copy, xh.XHelpersError)
    assert isinstance(errors[0], ValueError) and isinstance(errors[1], LookupError)
    assert isinstance(errors[2], ValueError) and isinstance(errors[3], RuntimeError)
