"""The kernel catalogue on the CPU: sources resolve, names and launch shapes are right."""

from __future__ import annotations

import re

import pytest

from gpubp.backends import kernel_catalog as catalog


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_every_family_source_resolves_and_defines_its_kernels(family):
    path = catalog.kernel_path(family)
    assert path.name == f"{family}.cu" and path.is_file()
    source = catalog.kernel_source(family)
    for name in catalog.name_expressions(family):
        kernel = name.split("<")[0]
        assert re.search(rf"__global__ void {kernel}\(", source), f"{kernel} is not defined in {path}"


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_kernel_sources_are_self_contained(family):
    # CuPy's compile cache keys on the source text only: an include could go stale.
    assert not re.search(r"^\s*#\s*include", catalog.kernel_source(family), re.MULTILINE)


def test_every_cu_file_in_kernels_is_a_known_family():
    folder = catalog.kernel_path("activation").parent
    assert sorted(p.stem for p in folder.glob("*.cu")) == sorted(catalog.FAMILIES)


def test_unknown_family_is_named_in_the_error():
    with pytest.raises(KeyError, match="conv"):
        catalog.kernel_path("conv")
    with pytest.raises(KeyError, match="conv"):
        catalog.name_expressions("conv")


def test_name_expressions_spell_the_template_arguments():
    assert catalog.bias_act_fwd("float32", "sigmoid", 4) == "bias_act_fwd<float, 1, 4>"
    assert catalog.bias_act_fwd("float16", None, 1) == "bias_act_fwd<half_t, 0, 1>"
    assert catalog.act_bwd("float64", "relu", 2) == "act_bwd<double, 3, 2>"
    assert catalog.softmax_xent_fwd("float32", "int64") == "softmax_xent_fwd<float, long long>"
    assert catalog.sgd_update("float16", 8) == "sgd_update<half_t, 8>"
    assert catalog.dropout_mask("float64") == "dropout_mask<double>"


def test_name_expressions_cover_every_dtype_and_are_unique():
    for family in catalog.FAMILIES:
        names = catalog.name_expressions(family)
        assert len(names) == len(set(names))
        for ctype in catalog.FLOAT_TYPES.values():
            assert any(f"<{ctype}" in n for n in names), (family, ctype)
    # 3 dtypes x (4 forward activations x 2 widths + 3 backward x 2 widths)
    assert len(catalog.name_expressions("activation")) == 3 * (8 + 6)
    assert len(catalog.name_expressions("softmax_xent")) == 3 * 2 * 2


def test_vector_width_is_sixteen_bytes():
    assert [catalog.vector_width(d) for d in ("float16", "float32", "float64")] == [8, 4, 2]


def test_pick_vector_width_needs_alignment_and_whole_rows():
    assert catalog.pick_vector_width("float32", [256, 512]) == 4
    assert catalog.pick_vector_width("float32", [256, 516]) == 1  # a view 4 bytes into an allocation
    assert catalog.pick_vector_width("float32", [256, 512], cols=12) == 4
    assert catalog.pick_vector_width("float32", [256, 512], cols=10) == 1  # a vector would straddle rows
    assert catalog.pick_vector_width("float16", [0], cols=16) == 8


@pytest.mark.parametrize(
    ("work", "sms", "expected"),
    [(0, 132, 1), (1, 132, 1), (256, 132, 1), (257, 132, 2), (10**9, 132, 132 * 8), (10**6, 1, 8)],
)
def test_grid_size_fills_the_device_once_at_most(work, sms, expected):
    assert catalog.grid_size(work, sms) == expected


def test_grid_size_rejects_a_device_without_multiprocessors():
    with pytest.raises(ValueError, match="sm_count"):
        catalog.grid_size(10, 0)


def test_values_per_counter_matches_random_cu():
    assert catalog.values_per_counter("uniform", "float32") == 4
    assert catalog.values_per_counter("uniform", "float64") == 2
    assert catalog.values_per_counter("normal", "float16") == 4
    assert catalog.values_per_counter("normal", "float64") == 2
    assert catalog.values_per_counter("dropout_mask", "float64") == 4


def test_instantiation_unit_takes_every_kernel_address():
    unit = catalog.instantiation_unit("optim")
    assert unit.startswith('#include "')
    for name in catalog.name_expressions("optim"):
        assert f"(void*)&{name}," in unit
