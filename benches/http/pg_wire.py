#!/usr/bin/env python3
"""Counts PostgreSQL round trips on the wire, by statement, for BENCHMARKS.md.

A TCP proxy between the http bench's `PostgresStore` and PostgreSQL: it
forwards both ways untouched and reads the client's messages. Every `Sync`
(and every simple `Query`) is one round trip: the client waits for the
server's `ReadyForQuery` before it goes on. A `Sync` is counted as

- `ping`: nothing before it (sqlx's pool pings every idle connection it
  hands out, `test_before_acquire`);
- `prepare <statement>`: `Parse` + `Describe` (sqlx's first use of a
  statement on a connection);
- `execute <statement>`: `Bind` + `Execute` (+ `Close` portal);

where `<statement>` names the store's statement from its SQL (`create`,
`get`, `start`, `finish`, ...; see `kind`). On SIGINT or SIGTERM it prints
the counts as JSON and stops.

    python3 benches/http/pg_wire.py 6543 127.0.0.1:5432 > counts.json &
    DATABASE_URL='postgres://postgres@127.0.0.1:6543/test?sslmode=disable' \
      BENCH_SCENARIOS=pg_submit BENCH_CONNECTIONS=1 ... cargo bench --bench http --all-features
    kill -INT $!

Its own TLS: none (`sslmode=disable`; an `SSLRequest` is answered `N`).
"""

import asyncio
import collections
import json
import os
import signal
import struct
import sys

COUNTS = collections.Counter()
SSL_REQUEST = 80877103
GSS_REQUEST = 80877104


def kind(sql):
    """The store's statement that `sql` is (see src/store/postgres/sql.rs)."""
    rules = [
        ("create", ["INSERT INTO", "room AS"]),
        ("claim", ["attempt = j.attempt + 1"]),
        ("renew", ["unnest("]),
        ("sweep", ["requeued AS"]),
        ("expire", ["gone AS (DELETE", "USING due"]),
        ("forget", ["DELETE FROM", "forget_at <= now()"]),
        ("cancel", ["'canceled'"]),
        ("delete", ["gone AS (DELETE FROM", "forgotten AS"]),
        ("get", ["FROM (VALUES ($1::uuid))"]),
        ("start", ["SET status = 'running'"]),
        ("progress", ["SET progress = $3"]),
        ("finish", ["result_status = $5"]),
        ("release", ["SET status = 'pending', waiting = true"]),
        ("response", ["SELECT j.result_status, j.result_headers"]),
        ("key_holder", ["idempotency_scope = $1"]),
        ("free_key", ["SET idempotency_scope = NULL"]),
        ("list", ["ORDER BY j.created_at_ms DESC"]),
    ]
    for name, needles in rules:
        if all(n in sql for n in needles):
            return name
    return "other: " + " ".join(sql.split())[:60]


def cstring(data, at):
    end = data.index(b"\0", at)
    return data[at:end].decode("utf-8", "replace"), end + 1


class Client:
    """What one client connection sent: its statements and its batch."""

    def __init__(self):
        self.statements = {}  # statement name -> kind
        self.batch = []  # (message type, statement kind or None) since the last Sync

    def message(self, typ, body):
        if typ == b"P":
            name, at = cstring(body, 0)
            sql, _ = cstring(body, at)
            self.statements[name] = kind(sql)
            self.batch.append(("P", self.statements[name]))
        elif typ == b"B":
            _portal, at = cstring(body, 0)
            name, _ = cstring(body, at)
            self.batch.append(("B", self.statements.get(name, "?")))
        elif typ == b"S":
            types = [t for t, _ in self.batch]
            if not self.batch:
                COUNTS["ping"] += 1
            elif "P" in types:
                COUNTS["prepare " + next(k for t, k in self.batch if t == "P")] += 1
            elif "B" in types:
                COUNTS["execute " + next(k for t, k in self.batch if t == "B")] += 1
            else:
                COUNTS["sync after " + "".join(types)] += 1
            COUNTS["round trips"] += 1
            self.batch = []
        elif typ == b"Q":
            sql, _ = cstring(body, 0)
            COUNTS["simple " + kind(sql)] += 1
            COUNTS["round trips"] += 1
        elif typ == b"X":
            pass
        else:
            self.batch.append((typ.decode("ascii", "replace"), None))


async def pump_server(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer, upstream):
    host, port = upstream.rsplit(":", 1)
    # Startup: length-prefixed messages without a type byte.
    while True:
        head = await client_reader.readexactly(8)
        length, code = struct.unpack("!ii", head)
        rest = await client_reader.readexactly(length - 8)
        if code in (SSL_REQUEST, GSS_REQUEST):
            client_writer.write(b"N")
            await client_writer.drain()
            continue
        break
    server_reader, server_writer = await asyncio.open_connection(host, int(port))
    server_writer.write(head + rest)
    COUNTS["connections"] += 1
    back = asyncio.create_task(pump_server(server_reader, client_writer))
    state = Client()
    try:
        while True:
            head = await client_reader.readexactly(5)
            typ, length = head[:1], struct.unpack("!i", head[1:])[0]
            body = await client_reader.readexactly(length - 4)
            state.message(typ, body)
            server_writer.write(head + body)
            await server_writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        server_writer.close()
        back.cancel()


async def main():
    listen, upstream = int(sys.argv[1]), sys.argv[2]
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream), "127.0.0.1", listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        json.dump(dict(sorted(COUNTS.items())), sys.stdout, indent=1)
        print(flush=True)
        # Open connections would keep the server's close waiting.
        os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
