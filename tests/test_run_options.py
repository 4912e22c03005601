"""RunOptions.override: a call's explicit arguments over the options (issue 27 item 1)."""

from __future__ import annotations

import dataclasses

import pytest

from sparse_rational.config import ModelOptions, RunOptions, StructureOptions, TrainConfig
from sparse_rational.errors import ParameterError
from sparse_rational.validate import check_run


def test_explicit_arguments_go_into_their_group_and_none_keeps_the_option():
    base = RunOptions(model=ModelOptions(patterns="3x2", dropout=0.3), train=TrainConfig(seed=4))
    got = base.override(patterns="2x1", dropout=None, seed=7, reg_strength=0.01, embeddings="x.txt")
    assert got.model.patterns == "2x1" and got.model.dropout == 0.3  # None: not given
    assert got.train.seed == 7 and got.train.lr == base.train.lr
    assert got.structure.reg_strength == 0.01 and got.embeddings == "x.txt"
    assert base.model.patterns == "3x2" and base.train.seed == 4  # nothing passed in is modified


def test_a_whole_group_is_replaced_before_single_fields():
    group = StructureOptions(reg_epochs=3, epsilon=0.2)
    got = RunOptions(structure=StructureOptions(reg_epochs=9)).override(structure=group, reg_strength=0.5)
    assert (got.structure.reg_epochs, got.structure.epsilon, got.structure.reg_strength) == (3, 0.2, 0.5)
    assert got.override() == got


def test_an_unknown_name_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'bogus'"):
        RunOptions().override(bogus=1)


def test_the_groups_field_names_are_distinct():  # override relies on it to find a field's group
    names = [
        f.name for g in ("model", "train", "structure", "teach") for f in dataclasses.fields(getattr(RunOptions(), g))
    ]
    assert len(names) == len(set(names))


def test_check_run_names_the_parameter_and_keeps_transformer_vectors_frozen():
    with pytest.raises(ParameterError, match="reg_strength"):
        check_run(RunOptions().override(reg_strength=0.1, target_transitions=5))
    with pytest.raises(ParameterError, match="target_transitions"):
        check_run(RunOptions().override(patterns="2x1", target_transitions=3))  # 2 transitions only
    options, stack = check_run(RunOptions(embeddings="hf:minilm").override(vectors="finetune", patterns="2x3,1x1"))
    assert options.model.vectors == "frozen" and stack == ((3, 3, 1),)
