"""A seeded Odoo-18-shaped distribution database and its filestore, for the sandbox and the tests.

Partners, products, stock locations/quants/moves, sale orders, customer invoices, vendor bills and
entries with balanced journal items, attachments stored in a filestore laid out as Odoo lays it
out (``<2 hex>/<sha1>`` plus ``checklist/`` markers), scheduled jobs with ``base.autovacuum_job``,
mail and fetchmail servers, payment providers, carriers, installed modules and the
``database.*`` parameters. Table and column names follow Odoo 18 (see ODOO-FACTS).

Rows are generated server-side (``generate_series``; attachments through ``COPY``), so large
scales stay fast: ``scale=1`` seeds in about a second; ``scale`` grows every business table
linearly (about 1 GB of database at scale 700).

```python
from erpops.backends.odoo import seed
result = seed.seed(dsn, "odoo", filestore=root / "filestore" / "odoo", scale=1)
result.counts["account_move_line"]   # rows per key table
```
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from erpops.backends.odoo import db as odoo_db
from erpops.backends.postgres import client as pg
from erpops.errors import InvalidInput, PermanentError

#: Row counts at scale 1 (each scaled linearly, at least 1).
BASE_COUNTS = {
    "partners": 200,
    "products": 100,
    "orders": 400,
    "receipts": 150,
    "bills": 100,
    "entries": 60,
    "stored_files": 30,
    "db_attachments": 6,
    "url_attachments": 4,
}
#: Tables whose row counts the seed reports: the drill's key tables (odoo_db.KEY_TABLES) plus the
#: tables neutralization changes, which a drill does not compare.
KEY_TABLES = (*odoo_db.KEY_TABLES, "ir_cron", "ir_mail_server")
#: Comment put on seeded databases (``replace=True`` only drops databases carrying it).
SEED_MARK = "erpops:seed"
MAX_SCALE = 5000
#: ``minimal``: the tables drills check; ``odoo18``: a real Odoo 18 database's whole catalog.
CATALOGS = ("minimal", "odoo18")


@dataclass
class SeedResult:
    database: str
    filestore: Path
    scale: float
    counts: dict[str, int] = field(default_factory=dict)
    files: int = 0
    filestore_bytes: int = 0
    db_size_bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "filestore": str(self.filestore),
            "scale": self.scale,
            "counts": dict(self.counts),
            "files": self.files,
            "filestore_bytes": self.filestore_bytes,
            "db_size_bytes": self.db_size_bytes,
            "seconds": round(self.seconds, 3),
        }


def check_catalog(catalog: str) -> None:
    if catalog not in CATALOGS:
        raise InvalidInput(f"catalog must be one of {', '.join(CATALOGS)} (got {catalog!r})")


def scaled_counts(scale: float) -> dict[str, int]:
    if not 0 < scale <= MAX_SCALE:
        raise InvalidInput(f"scale must be > 0 and <= {MAX_SCALE} (got {scale:g})")
    return {k: max(1, round(v * scale)) for k, v in BASE_COUNTS.items()}


def _sql(name: str) -> str:
    return resources.files("erpops.backends.odoo").joinpath(name).read_text()


def _render(script: str, counts: dict[str, int]) -> str:
    for key, value in counts.items():
        script = script.replace(f"@{key}@", str(int(value)))
    left = re.findall(r"@[a-z_]+@", "\n".join(ln for ln in script.splitlines() if not ln.startswith("--")))
    if left:
        raise PermanentError(f"seed script has unknown tokens: {sorted(set(left))}")
    return script


def database_exists(dsn: str, dbname: str) -> bool:
    with pg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def _drop_seeded(conn: Any, dbname: str) -> None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
    ).fetchone()
    if row is None:
        return
    if not (row[0] or "").startswith(SEED_MARK):
        raise PermanentError(f'refusing to replace database "{dbname}": it was not seeded by erpops')
    conn.execute(f"DROP DATABASE {pg.quote_ident(dbname)} WITH (FORCE)")


def seed(
    dsn: str,
    dbname: str = "odoo",
    filestore: Path | str | None = None,
    scale: float = 1.0,
    *,
    replace: bool = False,
    catalog: str = "minimal",
) -> SeedResult:
    """Create ``dbname`` on the server of ``dsn`` and fill it (and ``filestore``, when given) with an
    Odoo-shaped distribution company's data. Refuses an existing database or non-empty filestore
    unless ``replace`` (which only replaces what an earlier seed created). ``catalog``:
    ``minimal`` (the ~30 tables drills check) or ``odoo18`` (plus the rest of a real Odoo 18
    database's catalog, 528 tables: :mod:`erpops.backends.odoo.catalog`), for real restore costs."""
    check_catalog(catalog)
    started = time.monotonic()
    counts = scaled_counts(scale)
    fs = Path(filestore) if filestore is not None else None
    if fs is not None and fs.exists() and any(fs.iterdir()):
        if not replace:
            raise InvalidInput(f"filestore {fs} is not empty; refusing to seed over it")
        shutil.rmtree(fs)
    with pg.connect(dsn) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists and not replace:
            raise InvalidInput(f'database "{dbname}" already exists; refusing to seed over it')
        if exists:
            _drop_seeded(admin, dbname)
        ident = pg.quote_ident(dbname)
        admin.execute(f"CREATE DATABASE {ident} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        admin.execute(f"COMMENT ON DATABASE {ident} IS '{SEED_MARK} scale={scale:g} catalog={catalog} at={stamp}'")
    schema, constraints = _sql("seed_schema.sql").split("-- @constraints", 1)
    with pg.connect(dsn, dbname, autocommit=False) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET work_mem = '64MB'")
        conn.execute(schema)
        conn.execute(_render(_sql("seed_data.sql"), counts))
        files, nbytes = _attachments(conn, counts, fs)
        conn.execute(constraints)
        if catalog == "odoo18":
            from erpops.backends.odoo import catalog as odoo_catalog

            present = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            conn.execute(odoo_catalog.odoo18_sql(odoo_catalog.shape(conn), present))
        _reset_sequences(conn)
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
        result = SeedResult(dbname, fs or Path(), scale, files=files, filestore_bytes=nbytes)
        result.counts = row_counts(conn)
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        result.db_size_bytes = int(row[0]) if row else 0
    result.seconds = time.monotonic() - started
    return result


def _reset_sequences(conn: Any) -> None:
    """Point every ``id`` sequence past the rows inserted with explicit ids."""
    tables = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name = 'id' AND column_default LIKE 'nextval(%%'"
    ).fetchall()
    for (table,) in tables:
        ident = pg.quote_ident(table)
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM {ident}",
            (table,),
        )


def row_counts(conn: Any, tables: tuple[str, ...] = KEY_TABLES) -> dict[str, int]:
    """Exact row counts of the key tables that exist in the connected database."""
    present = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY(%s)",
            (list(tables),),
        )
    }
    out = {}
    for table in tables:
        if table in present:
            row = conn.execute(f"SELECT count(*) FROM {pg.quote_ident(table)}").fetchone()
            out[table] = int(row[0]) if row else 0
    return out


# --- attachments and the filestore ----------------------------------------------------------

_ATTACHED = (  # (res_model, res_field, mimetype, name pattern, count key bounding res_id)
    ("product.template", "image_1920", "image/png", "image_1920", "products"),
    ("sale.order", None, "application/pdf", "Quotation - S{id:05d}.pdf", "orders"),
    ("account.move", None, "application/pdf", "Invoice_{id}.pdf", "bills"),
    ("res.partner", None, "text/plain", "notes-{id}.txt", "partners"),
)
_COLUMNS = (
    "name", "res_model", "res_field", "res_id", "company_id", "type", "url", "public", "db_datas",
    "store_fname", "file_size", "checksum", "mimetype", "create_uid", "create_date", "write_uid", "write_date",
)  # fmt: skip


def _content(rng: random.Random, mimetype: str, i: int) -> bytes:
    size = rng.randint(512, 8192)
    header = {"image/png": b"\x89PNG\r\n\x1a\n", "application/pdf": b"%PDF-1.7\n"}.get(mimetype, b"")
    return header + f"erpops seed attachment {i}\n".encode() + rng.randbytes(size)


def _attachments(conn: Any, counts: dict[str, int], fs: Path | None) -> tuple[int, int]:
    """Stored files (every seventh shared by two rows), database-stored and URL attachments."""
    rng = random.Random(42)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    rows: list[tuple[Any, ...]] = []
    files = nbytes = 0
    if fs is not None:
        fs.mkdir(parents=True, exist_ok=True)
        for i in range(counts["stored_files"]):
            model, res_field, mimetype, pattern, bound = _ATTACHED[i % len(_ATTACHED)]
            res_id = 1 + (i * 37) % counts[bound]
            data = _content(rng, mimetype, i)
            sha = hashlib.sha1(data).hexdigest()
            fname = f"{sha[:2]}/{sha}"
            for base in (fs, fs / "checklist"):
                (base / sha[:2]).mkdir(parents=True, exist_ok=True)
            (fs / fname).write_bytes(data)
            (fs / "checklist" / fname).touch()
            files += 1
            nbytes += len(data)
            when = now - timedelta(days=rng.randint(0, 364), minutes=rng.randint(0, 1439))
            name = pattern.format(id=res_id)
            sharers = 2 if i % 7 == 6 else 1
            for k in range(sharers):
                rid = res_id if k == 0 else 1 + (res_id + 1) % counts[bound]
                rows.append((name, model, res_field, rid, 1, "binary", None, False, None, fname, len(data), sha,
                             mimetype, 2, when, 2, when))  # fmt: skip
    for i in range(counts["db_attachments"]):
        data = f"erpops seed note {i}\n".encode() * rng.randint(1, 20)
        when = now - timedelta(days=rng.randint(0, 364))
        sha = hashlib.sha1(data).hexdigest()
        rows.append((f"note-{i}.txt", "res.partner", None, 4 + i % counts["partners"], 1, "binary", None, False,
                     data, None, len(data), sha, "text/plain", 2, when, 2, when))  # fmt: skip
    for i in range(counts["url_attachments"]):
        when = now - timedelta(days=rng.randint(0, 364))
        rows.append((f"Catalogue {i}", "product.template", None, 1 + i % counts["products"], 1, "url",
                     f"https://catalogue.example/product/{i}", True, None, None, None, None, None,
                     2, when, 2, when))  # fmt: skip
    with conn.cursor() as cur, cur.copy(f"COPY ir_attachment ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return files, nbytes
