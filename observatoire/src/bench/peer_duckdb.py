"""The compute benchmark's peer: DuckDB runs the catalogue's own SQL of every
indicator (the records, kept in a temporary table as the project keeps them in memory,
then their aggregation and the published grid, primary disclosure flags included) over
the same detail-zone Parquet files and the same calendar and territory tables. Reads a JSON job on stdin, writes each indicator's rows to
<out>/<indicator>.parquet, prints one JSON line: seconds (the queries only), rows and each indicator's seconds."""
import json
import os
import sys
import time

import duckdb
import pyarrow.parquet as pq


def main() -> None:
    job = json.load(sys.stdin)
    threads = int(job["threads"])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    # The engine's SQL divides integers as integers, like DataFusion.
    con.execute("SET integer_division = true")
    # arrow_cast(date, 'Int64'): days since 1970-01-01, as DataFusion gives it.
    con.execute("CREATE MACRO arrow_cast(x, t) AS (CAST(x AS DATE) - DATE '1970-01-01')")
    # quantiles_rang(v): the project's aggregate of the ranked quantiles (the values at
    # positions ceil(q*n) of the sorted values), as a struct; DuckDB's own quantile_disc
    # follows the same rule (INDICATORS.md), so the peer uses it.
    con.execute(
        "CREATE MACRO quantiles_rang(x) AS struct_pack("
        "q50 := quantile_disc(x, 0.5), q75 := quantile_disc(x, 0.75), q90 := quantile_disc(x, 0.9))"
    )
    for name, files in job["tables"].items():
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}])")
    os.makedirs(job["out"], exist_ok=True)
    rows = 0
    seconds = 0.0
    each = {}
    for indicator, records, sql in job["queries"]:
        started = time.perf_counter()
        try:
            # As the project's compute: the records listed once, then the grid over them.
            con.execute(f"CREATE OR REPLACE TEMP TABLE rec_mat AS {records}")
            relation = con.sql(sql)
            # DuckDB 2 names it to_arrow_table, earlier versions arrow.
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            data = fetch()
        except Exception as e:  # name the indicator: the SQL is the catalogue's
            raise SystemExit(f"{indicator}: {e}")
        each[indicator] = time.perf_counter() - started
        seconds += each[indicator]
        rows += data.num_rows
        pq.write_table(data, os.path.join(job["out"], f"{indicator}.parquet"))
    print(json.dumps({"seconds": seconds, "rows": rows, "each": each}))


if __name__ == "__main__":
    main()
