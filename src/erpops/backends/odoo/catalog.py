"""The catalog of a real Odoo 18 database, for the sandbox seed (``catalog="odoo18"``).

What makes a logical restore of a real Odoo database slow is its catalog, not its rows: the
database with 111 modules measured for issue 17 had 528 tables, 1,208 indexes, 4,025 constraints
(1,914 of them foreign keys), 388 sequences and 5,383 columns; its 66 MB of rows restore in a
fraction of its 8.8 s. The seed's own ~30 tables have the business data drills check; this module
adds the rest of the catalog in Odoo's shape, so drills and benchmarks pay what a real restore
pays:

- *model tables* (one per model of the modules the seed lacks: ``hr_employee``, ``mrp_bom``...):
  ``id serial`` primary key, ``create_uid`` / ``write_uid`` referencing ``res_users`` and
  ``create_date`` / ``write_date`` as every Odoo table has, ``company_id`` on most, many-to-one
  columns referencing other tables (``ON DELETE SET NULL`` or ``RESTRICT`` as Odoo declares them),
  indexed fields, required fields ``NOT NULL``, translatable names as ``jsonb``, and a few rows;
- *relation tables* (many-to-many): two ``NOT NULL`` foreign keys ``ON DELETE CASCADE``, their
  pair the primary key, an index on the second column, as Odoo creates them.

Generated from a fixed seed: the same catalog every time. :func:`shape` measures any database's.
"""

from __future__ import annotations

import random
from typing import Any

#: The real Odoo 18 database's catalog (111 modules), measured.
ODOO18 = {"tables": 528, "indexes": 1208, "constraints": 4025, "foreign_keys": 1914, "sequences": 388,
          "columns": 5383}  # fmt: skip

_MODULES = (
    "hr", "hr_holidays", "hr_expense", "hr_attendance", "hr_recruitment", "mrp", "mrp_workorder", "quality",
    "project", "project_timesheet", "crm", "helpdesk", "maintenance", "fleet", "website", "website_sale",
    "event", "survey", "marketing", "mass_mailing", "pos", "loyalty", "repair", "lunch", "documents",
    "sign", "approvals", "planning", "appointment", "knowledge", "spreadsheet", "iot", "l10n", "account_asset",
    "account_budget", "account_reports", "stock_barcode", "stock_landed", "purchase_requisition", "sale_subscription",
)  # fmt: skip
_MODELS = (
    "line", "type", "tag", "stage", "template", "rule", "category", "log", "config", "wizard", "report",
    "history", "batch", "request", "allocation", "slot", "group", "answer", "question", "item", "channel",
    "move", "order", "schedule", "attribute", "value", "link", "alias", "resource", "activity",
)  # fmt: skip
_TYPES = ("varchar", "jsonb", "boolean", "integer", "numeric", "timestamp without time zone", "date", "text",
          "double precision")  # fmt: skip


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = f"{rng.choice(_MODULES)}_{rng.choice(_MODELS)}"
        if name in taken:
            name = f"{name}_{rng.choice(_MODELS)}"
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def odoo18_sql(existing: dict[str, int], present: set[str]) -> str:
    """DDL and rows that bring a database whose catalog is ``existing`` (see :func:`shape`; tables
    named in ``present``) to the shape of :data:`ODOO18`."""
    rng = random.Random(18)
    taken = set(present)
    models = max(0, ODOO18["sequences"] - existing["sequences"])
    relations = max(0, ODOO18["tables"] - existing["tables"] - models)
    model_names = _names(rng, models, taken)
    relation_names = [f"{n}_rel" for n in _names(rng, relations, taken)]
    # what the relation tables and the base columns of the model tables bring; the rest is spread
    columns_left = ODOO18["columns"] - existing["columns"] - 2 * relations - 5 * models
    fks_left = ODOO18["foreign_keys"] - existing["foreign_keys"] - 2 * relations - 2 * models
    # indexes: a primary key per table, the relation tables' second column; the rest on fields
    indexes_left = ODOO18["indexes"] - existing["indexes"] - models - 2 * relations
    per_model = [columns_left // max(1, models)] * models
    for i in range(columns_left - sum(per_model)):
        per_model[i % max(1, models)] += 1
    references = ["res_users", "res_company", "res_partner", "product_product", "stock_location"]
    statements: list[str] = []
    index_budget = indexes_left
    for i, table in enumerate(model_names):
        fks = fks_left // models + (1 if i < fks_left % models else 0)
        cols = [
            "id serial PRIMARY KEY",
            "create_uid integer REFERENCES res_users(id) ON DELETE SET NULL",
            "write_uid integer REFERENCES res_users(id) ON DELETE SET NULL",
            "create_date timestamp without time zone",
            "write_date timestamp without time zone",
        ]
        indexed: list[str] = []
        required: list[str] = []  # company columns Odoo declares required: the rows need one
        extra = per_model[i]
        for k in range(min(fks, extra)):
            target = references[k] if k < len(references) else rng.choice(model_names[:i] or references)
            action = "RESTRICT" if k == 1 and target == "res_company" else "SET NULL"
            if target == "res_company":
                required.append(f"f{k}_id")
            not_null = " NOT NULL" if target == "res_company" else ""
            cols.append(f"f{k}_id integer{not_null} REFERENCES {target}(id) ON DELETE {action}")
            if k < 2:
                indexed.append(f"f{k}_id")
        for k in range(extra - min(fks, extra)):
            kind = _TYPES[(i + k) % len(_TYPES)]
            if k == 0:
                required_name = "" if i % 5 == 0 else " NOT NULL"
                cols.append(f"name jsonb{required_name}" if i % 3 == 0 else f"name varchar{required_name}")
            elif k == 1:
                cols.append("active boolean DEFAULT true")
            elif k == 2:
                cols.append("state varchar NOT NULL DEFAULT 'draft'" if i % 2 == 0 else "state varchar DEFAULT 'draft'")
                indexed.append("state")
            else:
                cols.append(f"c{k} {kind}")
        statements.append(f"CREATE TABLE {table} (\n    " + ",\n    ".join(cols) + "\n)")
        for column in indexed:
            if index_budget <= 0:
                break
            statements.append(f"CREATE INDEX {table}__{column}_index ON {table} ({column})")
            index_budget -= 1
        if extra - min(fks, extra) > 0:  # a few rows: data to restore in every table that has a name
            name = "jsonb_build_object('en_US', 'Record ' || g)" if i % 3 == 0 else "'Record ' || g"
            companies = "".join(f", {c}" for c in required)
            first_company = ", (SELECT min(id) FROM res_company)" * len(required)
            statements.append(
                f"INSERT INTO {table} (name, create_uid, write_uid, create_date, write_date{companies}) "
                f"SELECT {name}, 1, 1, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'{first_company} "
                f"FROM generate_series(1, {1 + i % 7}) g"
            )
    for i, table in enumerate(relation_names):
        a = model_names[i % len(model_names)] if model_names else "res_partner"
        b = references[i % len(references)]
        statements.append(
            f"CREATE TABLE {table} (\n    a_id integer NOT NULL REFERENCES {a}(id) ON DELETE CASCADE,\n"
            f"    b_id integer NOT NULL REFERENCES {b}(id) ON DELETE CASCADE,\n    PRIMARY KEY (a_id, b_id)\n)"
        )
        statements.append(f"CREATE INDEX {table}_b_id_idx ON {table} (b_id)")
    # the rest of the indexes: on the model tables' other fields, as index=True fields are
    for i in range(max(0, index_budget)):
        table = model_names[i % len(model_names)]
        statements.append(f"CREATE INDEX {table}__write_date_{i}_index ON {table} (write_date)")
    return ";\n".join(statements) + ";\n"


def shape(conn: Any) -> dict[str, int]:
    """The catalog of the connected database's ``public`` schema, counted as ``ODOO18`` is."""
    row = conn.execute(
        "SELECT "
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')), "
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE n.nspname = 'public' AND c.relkind = 'i'), "
        "(SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        " WHERE n.nspname = 'public'), "
        "(SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        " WHERE n.nspname = 'public' AND c.contype = 'f'), "
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE n.nspname = 'public' AND c.relkind = 'S'), "
        "(SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public')"
    ).fetchone()
    keys = ("tables", "indexes", "constraints", "foreign_keys", "sequences", "columns")
    return dict(zip(keys, (int(v) for v in row), strict=True))
