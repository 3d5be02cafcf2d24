"""The ingest benchmark's peer: connectorx reads the same SELECTs as the ingest,
partitioned on id over the same number of connections, and pyarrow writes each table
to Parquet (snappy, like the lake). Prints one JSON line: seconds and rows."""
import json
import os
import sys
import time

import connectorx as cx
import pyarrow.parquet as pq


def main() -> None:
    url, out_dir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    queries = json.load(sys.stdin)
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    started = time.perf_counter()
    for table, query in queries:
        kwargs = {"return_type": "arrow"}
        if workers > 1:
            kwargs.update(partition_on="id", partition_num=workers)
        try:
            data = cx.read_sql(url, query, **kwargs)
        except Exception:  # an empty table has no id bounds to partition on
            data = cx.read_sql(url, query, return_type="arrow")
        rows += data.num_rows
        pq.write_table(data, os.path.join(out_dir, f"{table}.parquet"), compression="snappy")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
