"""Neutralization of a restored Odoo copy: what ``odoo-bin neutralize`` does, rule by rule.

Odoo neutralizes a database by running each installed module's ``data/neutralize.sql``. erpops
cannot run Odoo's files (a drill has the database, not the addons), so it keeps the same effects
as a table of rules, one per module's statement: each rule names the module it mirrors, the
table (and columns) it needs, and a condition selecting what is still live. A rule applies where
its table and columns exist — a module that was never installed has no table; a key a removed
module left in ``ir_config_parameter`` is removed as well, which is the safe side. Applying a
rule sets or deletes the rows matching its condition, so running it twice changes nothing, and
the same condition counts what is left (:func:`pending`): a neutralized copy has 0 everywhere.

Rules with more than one statement (scheduled jobs but the auto-vacuum, the mail servers and the
"disable emails" server, the database's identity) are in :func:`neutralize` itself. Beyond Odoo's
neutralize, as Odoo's *copy* restore does, a copy gets a new ``database.uuid`` and
``database.secret`` (it never signs sessions or tokens with production's secret, nor talks to
Odoo's services as production).

Keep the table current: a module whose ``neutralize.sql`` changes gets its rule changed here, and
every rule has a test on the seeded database (tests/integration/drill/test_neutralize.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

NEUTRALIZE_SERVER = "neutralization - disable emails"
WEBHOOK_OFF = "neutralization - disable webhook"


@dataclass(frozen=True)
class Rule:
    """One module's neutralization: ``UPDATE table SET assign WHERE where`` (or ``DELETE FROM
    table WHERE where`` when ``assign`` is empty). ``where`` selects what is still live."""

    name: str  # the key in the result: what it did, with the number of rows
    module: str  # the Odoo module whose data/neutralize.sql it mirrors
    table: str
    columns: tuple[str, ...]
    where: str
    assign: str = ""
    what: str = ""

    def statement(self) -> str:
        if self.assign:
            return f"UPDATE {self.table} SET {self.assign} WHERE {self.where}"
        return f"DELETE FROM {self.table} WHERE {self.where}"

    def count(self) -> str:
        return f"SELECT count(*) FROM {self.table} WHERE {self.where}"


def _keys(*keys: str) -> str:
    return "key IN (" + ", ".join(f"'{k}'" for k in keys) + ")"


RULES: tuple[Rule, ...] = (
    Rule("mail_templates_unlinked", "mail", "mail_template", ("mail_server_id",),
         "mail_server_id IS NOT NULL", "mail_server_id = NULL", "templates send through no chosen server"),
    Rule("fetchmail_servers_disabled", "mail", "fetchmail_server", ("active",),
         "active IS NOT false", "active = false", "incoming mail servers off"),
    Rule("web_push_keys_removed", "mail", "ir_config_parameter", ("key",),
         _keys("mail.web_push_vapid_private_key", "mail.web_push_vapid_public_key"),
         what="the web-push VAPID keys (browsers subscribed to production)"),
    Rule("web_push_queue_removed", "mail", "mail_push", (), "true", what="web-push notifications waiting to be sent"),
    Rule("web_push_devices_removed", "mail", "mail_push_device", (), "true",
         what="the browsers and phones subscribed to notifications"),
    Rule("sfu_key_removed", "mail", "ir_config_parameter", ("key",), _keys("mail.sfu_server_key"),
         what="the key to the video-call (SFU) server"),
    Rule("payment_providers_disabled", "payment", "payment_provider", ("state",),
         "state NOT IN ('test', 'disabled')", "state = 'disabled'", "payment providers but test ones off"),
    Rule("carriers_to_test", "delivery", "delivery_carrier", ("prod_environment",),
         "prod_environment", "prod_environment = false", "shipping carriers to their test environment"),
    Rule("banner_views_activated", "web", "ir_ui_view", ("key", "active"),
         "key = 'web.neutralize_banner' AND active IS NOT true", "active = true", "the 'neutralized' banner"),
    Rule("webhooks_disabled", "base", "ir_act_server", ("state", "webhook_url"),
         f"state = 'webhook' AND webhook_url IS DISTINCT FROM '{WEBHOOK_OFF}'", f"webhook_url = '{WEBHOOK_OFF}'",
         "server actions that call a webhook"),
    Rule("iap_tokens_disabled", "iap", "iap_account", ("account_token",),
         "account_token IS NOT NULL AND account_token NOT LIKE '%+disabled'",
         "account_token = regexp_replace(account_token, '(\\+.*)?$', '+disabled')",
         "in-app purchase accounts (SMS, OCR, enrichment credits)"),
    Rule("iap_extract_endpoint_removed", "iap_extract", "ir_config_parameter", ("key",),
         _keys("iap_extract_endpoint"), what="the document-digitization (OCR) endpoint"),
    Rule("avatax_companies_sandboxed", "account_avatax", "res_company", ("avalara_environment",),
         "avalara_environment IS DISTINCT FROM 'sandbox'", "avalara_environment = 'sandbox'",
         "Avalara tax calculation to its sandbox"),
    Rule("avatax_fiscal_positions_off", "account_avatax", "account_fiscal_position", ("is_avatax",),
         "is_avatax", "is_avatax = false", "fiscal positions computed by Avalara"),
    Rule("bank_sync_links_disabled", "account_online_synchronization", "account_online_link", ("client_id",),
         "client_id IS DISTINCT FROM 'duplicate'", "client_id = 'duplicate'", "online bank synchronization links"),
    Rule("ocn_ids_removed", "mail_mobile", "ir_config_parameter", ("key",), _keys("odoo_ocn.project_id", "ocn.uuid"),
         what="the mobile-notification (OCN) registration"),
    Rule("map_token_removed", "web_map", "ir_config_parameter", ("key",), _keys("web_map.token_map_box"),
         what="the Mapbox token"),
    Rule("barcode_lookup_key_removed", "product_barcodelookup", "ir_config_parameter", ("key",),
         _keys("product_barcodelookup.api_key"), what="the barcodelookup.com API key"),
    Rule("google_calendar_tokens_removed", "google_calendar", "res_users_settings",
         ("google_calendar_rtoken", "google_calendar_token"),
         "google_calendar_rtoken IS NOT NULL OR google_calendar_token IS NOT NULL",
         "google_calendar_rtoken = NULL, google_calendar_token = NULL", "users' Google Calendar tokens"),
)  # fmt: skip


def _utcnow_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


#: Tables neutralize changes itself (beyond the rules).
_SPECIAL = {"ir_cron", "ir_model_data", "ir_mail_server", "ir_config_parameter"}


def _columns(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    """The columns of each table the rules (or neutralize itself) touch that exists (one catalog
    query)."""
    tables = {r.table for r in RULES} | _SPECIAL
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
        (sorted(tables),),
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def applicable(columns: dict[str, set[str]]) -> list[Rule]:
    """The rules whose table and columns exist."""
    return [r for r in RULES if r.table in columns and set(r.columns) <= columns[r.table]]


def pending(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """What each applicable rule still has to do (0 everywhere once neutralized), plus active
    scheduled jobs other than the auto-vacuum and active mail servers other than the blackhole."""
    columns = _columns(conn)
    out = {r.name: int(conn.execute(r.count()).fetchone()[0]) for r in applicable(columns)}  # type: ignore[index]
    if "ir_cron" in columns:
        row = conn.execute(f"SELECT count(*) FROM ir_cron WHERE active AND {_not_autovacuum(columns)}")
        out["crons_active"] = int(row.fetchone()[0])  # type: ignore[index]
    if "ir_mail_server" in columns:
        row = conn.execute("SELECT count(*) FROM ir_mail_server WHERE active AND name <> %s", (NEUTRALIZE_SERVER,))
        out["mail_servers_active"] = int(row.fetchone()[0])  # type: ignore[index]
    return out


def _not_autovacuum(columns: dict[str, set[str]]) -> str:
    if "ir_model_data" not in columns:
        return "true"
    return (
        "id NOT IN (SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'autovacuum_job' "
        "AND model = 'ir.cron' AND res_id IS NOT NULL)"
    )


def neutralize(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Neutralize the connected copy in one transaction; returns what changed: rows per rule (for
    the rules whose tables exist), the "disable emails" server added or not, the new identity."""
    changed: dict[str, Any] = {}
    with conn.transaction():
        columns = _columns(conn)
        if "ir_cron" in columns:
            where = _not_autovacuum(columns)
            cur = conn.execute(f"UPDATE ir_cron SET active = false WHERE active IS NOT false AND {where}")
            changed["crons_disabled"] = cur.rowcount
        if "ir_mail_server" in columns:
            cur = conn.execute(
                "UPDATE ir_mail_server SET active = false WHERE active IS NOT false AND name <> %s",
                (NEUTRALIZE_SERVER,),
            )
            changed["mail_servers_disabled"] = cur.rowcount
            changed["neutralize_mail_server_added"] = _add_blackhole_server(conn, columns["ir_mail_server"])
        for rule in applicable(columns):
            changed[rule.name] = conn.execute(rule.statement()).rowcount
        if "ir_config_parameter" in columns:
            params = columns["ir_config_parameter"]
            _set_param(conn, params, "database.is_neutralized", "true")
            changed["is_neutralized"] = True
            _set_param(conn, params, "database.uuid", str(uuid.uuid1()))
            changed["new_database_uuid"] = True
            # as Odoo's copy restore: a copy signs nothing (sessions, tokens) with production's secret
            _set_param(conn, params, "database.secret", str(uuid.uuid4()))
            changed["new_database_secret"] = True
    return changed


def _insert(conn: psycopg.Connection[Any], table: str, present: set[str], values: dict[str, Any]) -> None:
    """INSERT only the columns the table has (audit columns filled when present)."""
    now = _utcnow_naive()
    for audit in ("create_date", "write_date"):
        values.setdefault(audit, now)
    cols = [c for c in values if c in present]
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() for _ in cols),
    )
    conn.execute(query, [values[c] for c in cols])


def _add_blackhole_server(conn: psycopg.Connection[Any], present: set[str]) -> bool:
    row = conn.execute("SELECT id FROM ir_mail_server WHERE name = %s", (NEUTRALIZE_SERVER,)).fetchone()
    if row is not None:
        conn.execute("UPDATE ir_mail_server SET active = true WHERE id = %s", (row[0],))
        return False
    _insert(
        conn,
        "ir_mail_server",
        present,
        {
            "name": NEUTRALIZE_SERVER,
            "smtp_host": "invalid",
            "smtp_port": 1025,
            "smtp_encryption": "none",
            "smtp_authentication": "login",
            "sequence": 1,
            "active": True,
        },
    )
    return True


def _set_param(conn: psycopg.Connection[Any], present: set[str], key: str, value: str) -> None:
    if "write_date" in present:
        cur = conn.execute(
            "UPDATE ir_config_parameter SET value = %s, write_date = %s WHERE key = %s", (value, _utcnow_naive(), key)
        )
    else:
        cur = conn.execute("UPDATE ir_config_parameter SET value = %s WHERE key = %s", (value, key))
    if cur.rowcount == 0:
        _insert(conn, "ir_config_parameter", present, {"key": key, "value": value})


def table_markdown() -> str:
    """The rules as a Markdown table (docs/neutralization.md is generated from it)."""
    lines = ["| rule | Odoo module | table | what |", "| --- | --- | --- | --- |"]
    for r in RULES:
        lines.append(f"| `{r.name}` | `{r.module}` | `{r.table}` | {r.what} |")
    return "\n".join(lines)
