"""The run manifest: one SQLite database in OUTDIR that records every input file and output.

``OUTDIR/xvert_manifest.sqlite`` (WAL journal; written by one process, the one that runs the
command: with Dask the client, never the workers). Table ``files`` has one row per pair of an
input file and an output it was started for, keyed by (input, output). An input gets a new row
when a run sends it to another output (named as a file instead of inside its folder, another
``--format``), so every output this OUTDIR's runs wrote stays on record: it is never taken for
a foreign file, and a done pair is skipped whichever way the input is named next time.

=============  ==============================================================================
input          absolute input path (key, with output)
output         output path relative to OUTDIR (key, with input); empty for the record of a
               file refused before it started, and for one whose output another input took
               over with ``--overwrite``. A non-empty output is in at most one row: the row
               of the input whose enhanced image the file holds (or is about to hold)
status         ``running`` (started, not finished: a killed run), ``done`` or ``failed``
size,          size, modification time (ns) and SHA-256 of the input as it was read
mtime_ns,
sha256
params         JSON of the parameters that shape the output (output format, toolkit version)
model          :attr:`xvert_gpu.enhancer.Enhancer.identity` (weights and chain settings)
error          why the last attempt failed (``None`` when done)
attempts       how many times the pair was started (planned-and-rejected counts as one)
first_started, unix times: first attempt, last attempt, end of last attempt; ``seconds``
started,       is the last attempt's wall time from the start of reading to the end of
finished,      writing (time waiting in the pipeline's queues included)
seconds
in_format, …   input and output format, bit depth, width, height, output size and SHA-256,
               the worker (``host:pid`` or Dask worker address), the run id
=============  ==============================================================================

A path that is not valid UTF-8 (a Latin-1 file name) is stored as a BLOB of its bytes and read
back as the same Python str (:func:`_to_sql`).

Table ``runs`` has one row per invocation (argv, model, settings, counts, status
``running``/``finished``/``interrupted``).

A row becomes ``done`` only after the output file has been renamed into place, so a ``done``
row always has a complete output. Resume semantics live in :mod:`xvert_gpu.batch.resume`.

Schema 1 (one row per input, keyed by input alone, which forgot an output as soon as its input
was sent elsewhere) is migrated to schema 2 in place, in one transaction, when it is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Manifest", "SCHEMA_VERSION", "RESULT_FIELDS"]

SCHEMA_VERSION = 2

_FILES = """
CREATE TABLE files (
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    params TEXT,
    model TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_started REAL,
    started REAL,
    finished REAL,
    seconds REAL,
    in_format TEXT,
    out_format TEXT,
    bits INTEGER,
    width INTEGER,
    height INTEGER,
    out_size INTEGER,
    out_sha256 TEXT,
    worker TEXT,
    run INTEGER,
    PRIMARY KEY (input, output)
);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS files_output ON files (output);
CREATE INDEX IF NOT EXISTS files_status ON files (status);
"""

_OTHER_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL,
    finished REAL,
    argv TEXT,
    model TEXT,
    params TEXT,
    settings TEXT,
    status TEXT,
    done INTEGER,
    skipped INTEGER,
    failed INTEGER,
    ignored INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

#: The columns of ``files`` (the same in schemas 1 and 2; only the key changed).
_COLUMNS = ("input, output, status, size, mtime_ns, sha256, params, model, error, attempts, "
            "first_started, started, finished, seconds, in_format, out_format, bits, width, "
            "height, out_size, out_sha256, worker, run")

# Schema 1 keyed ``files`` by input alone. SQLite cannot change a primary key in place: the
# table is rebuilt, inside one transaction, so a run killed meanwhile leaves schema 1 intact.
# The old indexes are dropped first: they would follow the renamed table and keep their names.
_MIGRATE_1_TO_2 = f"""
BEGIN IMMEDIATE;
ALTER TABLE files RENAME TO files_schema1;
DROP INDEX IF EXISTS files_output;
DROP INDEX IF EXISTS files_status;
{_FILES}
INSERT INTO files ({_COLUMNS}) SELECT {_COLUMNS} FROM files_schema1;
DROP TABLE files_schema1;
{_INDEXES}
UPDATE meta SET value = '2' WHERE key = 'schema';
COMMIT;
"""


#: Columns a finished attempt may set (see :meth:`Manifest.finish`).
RESULT_FIELDS = ("size", "mtime_ns", "sha256", "error", "seconds", "in_format", "out_format",
                 "bits", "width", "height", "out_size", "out_sha256", "worker")


def _to_sql(value: Any) -> Any:
    """A parameter as SQLite can store it: a str that is not valid Unicode (a file name with
    bytes that are not UTF-8, which Python holds as surrogate escapes: archives written under
    Latin-1 or cp1252) becomes its file-system bytes, a BLOB; SQLite's UTF-8 text cannot hold
    it, and sqlite3 would raise UnicodeEncodeError and stop the whole run. A BLOB never equals
    a TEXT value, so it cannot be mistaken for another file's name."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value)
    return value


class _Connection(sqlite3.Connection):
    """A connection whose ``execute`` stores str parameters through :func:`_to_sql`."""

    def execute(self, sql, parameters=()):
        return super().execute(sql, [_to_sql(v) for v in parameters])


def _row(cursor: sqlite3.Cursor, values: tuple) -> sqlite3.Row:
    """A :class:`sqlite3.Row`, BLOBs (:func:`_to_sql`) decoded back into the same str."""
    return sqlite3.Row(cursor, tuple(os.fsdecode(v) if isinstance(v, bytes) else v
                                     for v in values))


class Manifest:
    """The manifest database of one OUTDIR.

    Parameters
    ----------
    path : path
        The database file (created if missing).

    Notes
    -----
    Every method commits at once: a row's state on disk is always the last thing that
    happened to the file. Use from one thread only.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), timeout=30.0, factory=_Connection)
        self.conn.row_factory = _row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._upgrade()
        except BaseException:
            self.conn.close()
            raise

    def _schema(self) -> int | None:
        """The schema version on disk (None: a new database)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None:
            return int(row[0])
        files = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'files'").fetchone()
        return None if files is None else 1

    def _upgrade(self) -> None:
        """Create the tables of a new manifest, or bring an older one to the current schema."""
        with self.conn:
            self.conn.executescript(_OTHER_TABLES)
        version = self._schema()
        if version is not None and version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: manifest schema {version} is newer than this "
                               f"xvert_gpu understands ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        script = (_MIGRATE_1_TO_2 if version == 1 else
                  f"BEGIN IMMEDIATE; {_FILES} {_INDEXES} INSERT INTO meta VALUES ('schema', "
                  f"'{SCHEMA_VERSION}'); COMMIT;")
        try:
            self.conn.executescript(script)
        except BaseException:
            if self.conn.in_transaction:  # executescript leaves a failed script's BEGIN open
                self.conn.rollback()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: str, output: str | None = None) -> sqlite3.Row | None:
        """The row of input ``key`` (absolute path) and ``output`` (relative to OUTDIR), or None.

        Without ``output``: the input's most recently started row.
        """
        if output is not None:
            return self.conn.execute("SELECT * FROM files WHERE input = ? AND output = ?",
                                     (key, output)).fetchone()
        return self.conn.execute("SELECT * FROM files WHERE input = ? "
                                 "ORDER BY started DESC, rowid DESC LIMIT 1", (key,)).fetchone()

    def owner(self, output: str) -> sqlite3.Row | None:
        """The row whose output is ``output`` (relative to OUTDIR, not empty), or None."""
        if not output:
            return None
        return self.conn.execute("SELECT * FROM files WHERE output = ? LIMIT 1",
                                 (output,)).fetchone()

    def rows(self, status: str | None = None) -> list[sqlite3.Row]:
        """All rows (optionally of one status), by input and output path."""
        if status is None:
            return self.conn.execute("SELECT * FROM files ORDER BY input, output").fetchall()
        return self.conn.execute("SELECT * FROM files WHERE status = ? ORDER BY input, output",
                                 (status,)).fetchall()

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, argv: list[str], model: str, params: Mapping[str, Any],
                  settings: Mapping[str, Any]) -> int:
        """Record the start of an invocation; returns its id."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (started, argv, model, params, settings, status) "
                "VALUES (?, ?, ?, ?, ?, 'running')",
                (time.time(), json.dumps(list(argv)), model, json.dumps(dict(params), sort_keys=True),
                 json.dumps(dict(settings), sort_keys=True, default=str)))
        return int(cur.lastrowid)

    def end_run(self, run: int, status: str, counts: Mapping[str, int]) -> None:
        """Record the end of an invocation with its counts (done, skipped, failed, ignored)."""
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET finished = ?, status = ?, done = ?, skipped = ?, failed = ?, "
                "ignored = ? WHERE id = ?",
                (time.time(), status, counts.get("done", 0), counts.get("skipped", 0),
                 counts.get("failed", 0), counts.get("ignored", 0), run))

    # -- files ------------------------------------------------------------------------------

    def start(self, key: str, output: str, run: int, params: str, model: str) -> None:
        """Mark the pair (input ``key``, ``output``) as started (``running``, one more attempt).

        Another input's row with the same output loses it (becomes ``failed`` with an empty
        output, saying so, and replaces that input's earlier empty-output row): its output file
        is about to be replaced. The input's rows for other outputs are left as they are.
        """
        now = time.time()
        with self.conn:
            if output:
                self.conn.execute(
                    "UPDATE OR REPLACE files SET status = 'failed', error = ?, output = '' "
                    "WHERE output = ? AND input != ?",
                    (f"its output {output} was replaced by the output of {key}", output, key))
            self.conn.execute(
                """INSERT INTO files (input, output, status, params, model, attempts,
                                      first_started, started, run)
                   VALUES (?, ?, 'running', ?, ?, 1, ?, ?, ?)
                   ON CONFLICT (input, output) DO UPDATE SET
                       status = 'running', params = excluded.params, model = excluded.model,
                       error = NULL, attempts = attempts + 1, started = excluded.started,
                       finished = NULL, run = excluded.run""",
                (key, output, params, model, now, now, run))

    def finish(self, key: str, output: str, status: str, result: Mapping[str, Any],
               model: str | None = None) -> None:
        """Record the end of the current attempt of (``key``, ``output``): "done" or "failed".

        ``result`` may hold any of :data:`RESULT_FIELDS`; ``model`` replaces the row's model
        identity (a Dask worker reports the identity it actually ran).
        """
        if status not in ("done", "failed"):
            raise ValueError(f"status must be 'done' or 'failed'; got {status!r}")
        cols = [c for c in RESULT_FIELDS if c in result]
        sets = ", ".join(f"{c} = ?" for c in cols)
        values = [result[c] for c in cols]
        if status == "done" and "error" not in cols:
            sets += (", " if sets else "") + "error = NULL"
        if model is not None:
            sets += ", model = ?"
            values.append(model)
        with self.conn:
            self.conn.execute(f"UPDATE files SET status = ?, finished = ?{', ' if sets else ''}"
                              f"{sets} WHERE input = ? AND output = ?",
                              [status, time.time(), *values, key, output])

    def rekey(self, old: str, new: str, output: str, size: int, mtime_ns: int) -> None:
        """Move the row (``old``, ``output``) to input path ``new`` (the same file, moved),
        replacing any row (``new``, ``output``); ``size`` and ``mtime_ns`` are the file's at its
        new place."""
        with self.conn:
            self.conn.execute("DELETE FROM files WHERE input = ? AND output = ?", (new, output))
            self.conn.execute("UPDATE files SET input = ?, size = ?, mtime_ns = ? "
                              "WHERE input = ? AND output = ?",
                              (new, size, mtime_ns, old, output))

    def reject(self, key: str, run: int, reason: str, params: str, model: str) -> None:
        """Record a file that was refused before it was started (one attempt, ``failed``).

        The record is the input's row with an empty output: a refusal never touches the rows
        of the outputs the input has (a done output stays done).
        """
        self.start(key, "", run, params, model)
        self.finish(key, "", "failed", {"error": reason})
