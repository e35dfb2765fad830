"""Flattening buckets into rows, and rows into Arrow, pandas and polars, with exact money."""

from __future__ import annotations

from decimal import Decimal

from usageledger import catalogue, decode_page
from usageledger.rows import arrow_schema, flatten, row_keys, to_arrow, to_pandas, to_polars

from fixtures.data import EXAMPLES


def _rows(name: str) -> list[dict[str, object]]:
    page = decode_page((EXAMPLES / f"{name}.json").read_bytes())
    return list(flatten(catalogue.get(name), page.data))


def test_rows_carry_endpoint_bucket_bounds_groups_and_metrics() -> None:
    """Every example flattens to one row with the catalogue's keys, in order."""
    for endpoint in catalogue.ENDPOINTS:
        (row,) = _rows(endpoint.name)
        assert tuple(row) == row_keys(endpoint)
        assert row["endpoint"] == endpoint.name
        assert (row["bucket_start"], row["bucket_end"]) == (1730419200, 1730505600)


def test_costs_money_stays_exact_through_every_table() -> None:
    """0.06 stays Decimal('0.06') in rows, Arrow, pandas and polars."""
    rows = _rows("costs")
    costs = catalogue.get("costs")
    assert rows[0]["amount_value"] == Decimal("0.06") and rows[0]["currency"] == "usd"
    table = to_arrow(costs, rows)
    assert table.schema == arrow_schema(costs)
    assert table.column("amount_value")[0].as_py() == Decimal("0.06")
    assert to_pandas(costs, rows)["amount_value"][0] == Decimal("0.06")
    assert to_polars(costs, rows)["amount_value"][0] == Decimal("0.06")


def test_unknown_results_are_not_rows() -> None:
    """An opaque result in a page is skipped, the known one kept."""
    body = (
        b'{"object":"page","has_more":false,"next_page":null,"data":[{"object":"bucket","start_time":0,'
        b'"end_time":86400,"results":[{"object":"organization.usage.new_thing.result","x":1},'
        b'{"object":"organization.usage.vector_stores.result","usage_bytes":7,"project_id":"p"}]}]}'
    )
    rows = list(flatten(catalogue.get("vector_stores"), decode_page(body).data))
    assert rows == [
        {"endpoint": "vector_stores", "bucket_start": 0, "bucket_end": 86400, "project_id": "p", "usage_bytes": 7}
    ]


def test_rows_and_the_store_share_one_arrow_type_map() -> None:
    """The store's write batches and the rows give each column the same Arrow type, from one map."""
    from usageledger import rows
    from usageledger.store import schema

    assert (schema.DECIMAL_PRECISION, schema.DECIMAL_SCALE) == (rows.DECIMAL_PRECISION, rows.DECIMAL_SCALE)
    assert schema.arrow_type is rows.arrow_type
    for endpoint in catalogue.ENDPOINTS:
        stored = schema.table_for(endpoint).arrow_schema()
        flat = arrow_schema(endpoint)
        for name in ("bucket_start", "bucket_end", *(c.name for c in endpoint.columns)):
            assert stored.field(name).type == flat.field(name).type


def test_pandas_dtypes_are_the_schemas_whatever_the_rows_hold() -> None:
    """A whole-number column with a null was `float64` (and without one `int64`), a boolean one `object`: every
    endpoint's frame now has the same dtypes for no rows, the example's row, and a row of nulls beside it, a null
    whole number `<NA>` in an exact `Int64`."""
    import pandas as pd

    for endpoint in catalogue.ENDPOINTS:
        (row,) = _rows(endpoint.name)
        nulls = {**row, **{c.name: None for c in endpoint.columns}}
        frames = [to_pandas(endpoint, rows) for rows in ([], [row], [row, nulls], [nulls])]
        dtypes = [{name: str(dtype) for name, dtype in frame.dtypes.items()} for frame in frames]
        assert dtypes == [dtypes[0]] * 4, endpoint.name
        for column in endpoint.columns:  # text is pandas' own string dtype, whichever its version has
            want = {"int": "Int64", "bool": "boolean", "decimal": "object"}.get(column.type)
            assert want in (None, dtypes[0][column.name]), (endpoint.name, column.name)
        ints = [c.name for c in endpoint.columns if c.type == "int"]
        if not ints:  # costs: money and quantities, exact Decimal objects (None for a null)
            assert frames[2]["amount_value"].iloc[1] is None and isinstance(frames[1]["amount_value"][0], Decimal)
            continue
        assert frames[2][ints].iloc[1].isna().all(), endpoint.name
        got = [None if value is pd.NA else value for value in frames[2][ints].iloc[0]]
        assert got == [row[name] for name in ints], endpoint.name
