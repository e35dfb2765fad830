"""``usageledger._arrays.array_of``: the array ``pa.array`` makes, built from buffers, so a store's load never makes
pyarrow import pandas (0.3 s and 50 MB per sync, where pandas is installed)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usageledger._arrays import array_of

TYPES = {
    "string": (pa.string(), st.text()),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "timestamp": (pa.timestamp("s", tz="UTC"), st.integers(0, 253402300799)),
    "bool": (pa.bool_(), st.booleans()),
    "decimal": (
        pa.decimal128(38, 18),
        st.decimals(min_value=Decimal("-1e19"), max_value=Decimal("1e19"), places=18, allow_nan=False),
    ),
}


@pytest.mark.parametrize("kind", list(TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_array_is_pa_arrays(kind: str, data: st.DataObject) -> None:
    """Any list of values of the type and nulls gives exactly ``pa.array``'s array (values, nulls, type), valid."""
    type_, values = TYPES[kind]
    given_values = data.draw(st.lists(st.one_of(st.none(), values), max_size=40))
    built = array_of(given_values, type_)
    built.validate(full=True)
    assert built.equals(pa.array(given_values, type_)) and built.type == type_


@pytest.mark.parametrize(
    ("values", "type_"),
    [
        ([Decimal("1.0000000000000000001")], pa.decimal128(38, 18)),  # more places than the type keeps
        ([Decimal("1e21")], pa.decimal128(38, 18)),  # more digits than it holds
        (["x"], pa.int64()),
        ([2**64], pa.int64()),
        ([1], pa.string()),
    ],
)
def test_a_value_it_does_not_take_fails_as_pa_array_fails(values: list[object], type_: pa.DataType) -> None:
    with pytest.raises(Exception) as expected:
        pa.array(values, type_)
    with pytest.raises(type(expected.value)) as got:
        array_of(values, type_)
    assert str(got.value) == str(expected.value)


def test_other_types_are_pa_arrays() -> None:
    assert array_of([1.5, None], pa.float64()).equals(pa.array([1.5, None], pa.float64()))


def test_building_costs_columns_imports_no_pandas() -> None:
    """In a fresh interpreter (pandas is installed in the test environment), a costs window's columns are built
    without pandas being imported."""
    code = (
        "import sys\n"
        "from decimal import Decimal\n"
        "import pyarrow as pa\n"
        "from usageledger._arrays import array_of\n"
        "array_of(['a', None], pa.string()); array_of([1, None], pa.timestamp('s', tz='UTC'))\n"
        "array_of([Decimal('1.25'), None], pa.decimal128(38, 18))\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
