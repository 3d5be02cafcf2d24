"""The ingest benchmark's peer: connectorx reads the same SELECTs as the ingest,
partitioned on id over the same number of connections, and pyarrow writes each table
to Parquet (snappy, like the lake). Prints one JSON line: seconds and rows, and the
processor time of the timed part (this process's, and the whole machine's busy time
from /proc/stat where there is one), in seconds of one core."""
import json
import os
import sys
import time

import connectorx as cx
import pyarrow.parquet as pq


def machine_busy():
    """Seconds of one core the machine spent busy since boot (user, nice, system, irq,
    softirq; not idle, iowait or steal), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return busy / os.sysconf("SC_CLK_TCK")


def main() -> None:
    url, out_dir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    queries = json.load(sys.stdin)
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    busy_before = machine_busy()
    cpu_before = time.process_time()
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
    cpu = time.process_time() - cpu_before
    busy_after = machine_busy()
    machine = None if busy_before is None or busy_after is None else busy_after - busy_before
    print(json.dumps({"seconds": seconds, "rows": rows, "cpu": cpu, "machine": machine}))


if __name__ == "__main__":
    main()
