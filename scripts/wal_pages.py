#!/usr/bin/env python3
"""Which B-trees each transaction in a SQLite WAL wrote, on average: the write amplification
behind ingest throughput (BENCHMARKS.md, "Where the ingest time goes").

Usage: wal_pages.py COPY_OF_DB_WAL COPY_OF_DB [LAST_N_TRANSACTIONS]

Take both copies while the server is stopped mid-ingest with SIGKILL (so the WAL is not
checkpointed away), e.g. during `hookwatch-bench --data-dir DIR`. Pages are named with the
`dbstat` table of the database copy (SQLite opens it and recovers the WAL copy beside it);
pages `dbstat` does not list are pointer-map or free-list pages.
"""
import collections
import sqlite3
import struct
import sys


def transactions(wal):
    magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">IIIIIIII", wal[:32])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit("not a WAL file")
    frame = 24 + page_size
    current, offset = [], 32
    while offset + frame <= len(wal):
        page, commit, s1, s2 = struct.unpack(">IIII", wal[offset:offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        current.append(page)
        if commit:
            yield current
            current = []
        offset += frame


def main():
    wal_path, db_path = sys.argv[1], sys.argv[2]
    last = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    with open(wal_path, "rb") as f:
        txs = list(transactions(f.read()))[-last:]
    if not txs:
        sys.exit("no committed transaction in the WAL")
    names = dict(sqlite3.connect(db_path).execute("SELECT pageno, name FROM dbstat"))
    pages = collections.Counter()
    for tx in txs:
        for page in set(tx):
            pages[names.get(page, "(pointer map or free list)")] += 1
    frames = sum(len(tx) for tx in txs) / len(txs)
    print(f"{len(txs)} transactions, {frames:.1f} frames each; distinct pages per transaction:")
    for name, count in pages.most_common():
        print(f"{count / len(txs):8.2f}  {name}")


if __name__ == "__main__":
    main()
