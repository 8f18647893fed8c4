"""Issue 17 item 1: neutralization has the effects of Odoo's own (each installed module's
``data/neutralize.sql``): one test per rule of the table, on the seeded database.

Each case gives the module's table the shape Odoo gives it (where the seed lacks that module), a
live row (production's token, key, link) and a bystander that must not change; neutralization
must leave nothing live for the rule, touch no bystander, and change nothing the second time.
Everything happens in a transaction that is rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from erpops.backends.odoo.neutralize import RULES, neutralize, pending
from erpops.backends.postgres import client as pg


@dataclass(frozen=True)
class Case:
    setup: tuple[str, ...]  # makes the table as the module has it (if the seed lacks it) and a live row
    bystander: str  # a query whose answer neutralization must not change


def _param(key: str, value: str) -> str:
    return f"INSERT INTO ir_config_parameter (key, value) VALUES ('{key}', '{value}')"


KEEPS_BASE_URL = "SELECT value FROM ir_config_parameter WHERE key = 'web.base.url'"

CASES: dict[str, Case] = {
    "mail_templates_unlinked": Case(
        ("CREATE TABLE mail_template (id serial PRIMARY KEY, name jsonb, model varchar, mail_server_id integer)",
         "INSERT INTO mail_template (name, model, mail_server_id) VALUES ('{\"en_US\": \"Order\"}', 'sale.order', 1)",
         "INSERT INTO mail_template (name, model) VALUES ('{\"en_US\": \"Quote\"}', 'sale.order')"),
        "SELECT count(*) FROM mail_template"),
    "fetchmail_servers_disabled": Case(
        ("UPDATE fetchmail_server SET active = true",),
        "SELECT string_agg(server, ',' ORDER BY id) FROM fetchmail_server"),
    "web_push_keys_removed": Case(
        (_param("mail.web_push_vapid_private_key", "production-vapid-private"),
         _param("mail.web_push_vapid_public_key", "production-vapid-public")), KEEPS_BASE_URL),
    "web_push_queue_removed": Case(
        ("CREATE TABLE mail_push (id serial PRIMARY KEY, mail_push_device_id integer NOT NULL, payload text)",
         "INSERT INTO mail_push (mail_push_device_id, payload) VALUES (1, '{\"title\": \"New order\"}')"),
        "SELECT count(*) FROM res_partner"),
    "web_push_devices_removed": Case(
        ("CREATE TABLE mail_push_device (id serial PRIMARY KEY, partner_id integer NOT NULL, endpoint varchar "
         "NOT NULL, keys text NOT NULL, expiration_time date)",
         "INSERT INTO mail_push_device (partner_id, endpoint, keys) VALUES (3, 'https://fcm.googleapis.com/x', "
         "'{\"p256dh\": \"k\"}')"), "SELECT count(*) FROM res_partner"),
    "sfu_key_removed": Case((_param("mail.sfu_server_key", "production-sfu-key"),
                             _param("mail.sfu_server_url", "https://sfu.example.com")),
                            "SELECT value FROM ir_config_parameter WHERE key = 'mail.sfu_server_url'"),
    "payment_providers_disabled": Case(
        ("UPDATE payment_provider SET state = 'enabled' WHERE id = (SELECT min(id) FROM payment_provider)",
         "INSERT INTO payment_provider (name, code, state, company_id) VALUES ('{\"en_US\": \"Demo\"}', 'demo', "
         "'test', 1)"), "SELECT count(*) FROM payment_provider WHERE state = 'test'"),
    "carriers_to_test": Case(
        ("UPDATE delivery_carrier SET prod_environment = true",), "SELECT count(*) FROM delivery_carrier WHERE active"),
    "banner_views_activated": Case(
        ("UPDATE ir_ui_view SET active = false WHERE key = 'web.neutralize_banner'",),
        "SELECT count(*) FROM ir_ui_view WHERE active AND key IS DISTINCT FROM 'web.neutralize_banner'"),
    "webhooks_disabled": Case(
        ("ALTER TABLE ir_act_server ADD COLUMN webhook_url varchar",
         "INSERT INTO ir_act_server (name, model_name, state, webhook_url) VALUES ('{\"en_US\": \"Notify WMS\"}', "
         "'stock.picking', 'webhook', 'https://wms.example.com/hook?token=production')",
         "INSERT INTO ir_act_server (name, model_name, state, code) VALUES ('{\"en_US\": \"Recompute\"}', "
         "'sale.order', 'code', 'records.action_confirm()')"),
        "SELECT string_agg(coalesce(webhook_url, '-') || code, ',' ORDER BY id) FROM ir_act_server "
        "WHERE state = 'code'"),
    "iap_tokens_disabled": Case(
        ("CREATE TABLE iap_account (id serial PRIMARY KEY, service_name varchar, account_token varchar, "
         "company_ids integer[])",
         "INSERT INTO iap_account (service_name, account_token) VALUES ('sms', 'a1b2c3d4e5f6'), "
         "('invoice_ocr', 'f6e5d4c3+trial')"), "SELECT string_agg(service_name, ',' ORDER BY id) FROM iap_account"),
    "iap_extract_endpoint_removed": Case(
        (_param("iap_extract_endpoint", "https://extract.api.odoo.com"),), KEEPS_BASE_URL),
    "avatax_companies_sandboxed": Case(
        ("ALTER TABLE res_company ADD COLUMN avalara_environment varchar",
         "UPDATE res_company SET avalara_environment = 'production'"),
        "SELECT string_agg(name, ',' ORDER BY id) FROM res_company"),
    "avatax_fiscal_positions_off": Case(
        ("CREATE TABLE account_fiscal_position (id serial PRIMARY KEY, name jsonb NOT NULL, company_id integer, "
         "is_avatax boolean)",
         "INSERT INTO account_fiscal_position (name, company_id, is_avatax) VALUES ('{\"en_US\": \"Avatax US\"}', 1, "
         "true), ('{\"en_US\": \"EU B2B\"}', 1, false)"),
        "SELECT count(*) FROM account_fiscal_position"),
    "bank_sync_links_disabled": Case(
        ("CREATE TABLE account_online_link (id serial PRIMARY KEY, name varchar, client_id varchar NOT NULL, "
         "refresh_token varchar, access_token varchar, state varchar)",
         "INSERT INTO account_online_link (name, client_id, state) VALUES ('Bank of Example', "
         "'production-client', 'connected')"), "SELECT string_agg(name, ',' ORDER BY id) FROM account_online_link"),
    "ocn_ids_removed": Case(
        (_param("odoo_ocn.project_id", "123456789"), _param("ocn.uuid", "5f0c1c8e-ocn")), KEEPS_BASE_URL),
    "map_token_removed": Case((_param("web_map.token_map_box", "pk.production-mapbox"),), KEEPS_BASE_URL),
    "barcode_lookup_key_removed": Case(
        (_param("product_barcodelookup.api_key", "production-barcode-key"),), KEEPS_BASE_URL),
    "google_calendar_tokens_removed": Case(
        ("CREATE TABLE res_users_settings (id serial PRIMARY KEY, user_id integer NOT NULL, "
         "google_calendar_rtoken varchar, google_calendar_token varchar, google_calendar_token_validity timestamp, "
         "calendar_default_privacy varchar)",
         "INSERT INTO res_users_settings (user_id, google_calendar_rtoken, google_calendar_token, "
         "calendar_default_privacy) VALUES (2, '1//production-refresh', 'ya29.production', 'public'), "
         "(3, NULL, NULL, 'private')"),
        "SELECT string_agg(calendar_default_privacy, ',' ORDER BY id) FROM res_users_settings"),
}  # fmt: skip


def test_every_rule_has_a_case_and_names_its_module() -> None:
    """A rule added to the table without a test here fails (and a case without a rule)."""
    assert {r.name for r in RULES} == set(CASES)
    assert len({r.name for r in RULES}) == len(RULES)
    assert all(r.module and r.what for r in RULES)


@pytest.fixture
def conn(seeded_db) -> Iterator[Any]:
    """The seeded database in a transaction that is rolled back."""
    with pg.connect(seeded_db.server_dsn, seeded_db.dbname, autocommit=False) as c:
        try:
            yield c
        finally:
            c.rollback()


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_rule_neutralizes_what_is_live_and_nothing_else(conn, rule: str) -> None:
    case = CASES[rule]
    for statement in case.setup:
        conn.execute(statement)
    before = conn.execute(case.bystander).fetchone()
    live = pending(conn)
    assert live.get(rule, 0) >= 1, f"the setup left nothing live for {rule}: {live}"

    changed = neutralize(conn)
    assert changed[rule] >= 1
    after = pending(conn)
    assert {k: v for k, v in after.items() if v} == {}, after
    assert conn.execute(case.bystander).fetchone() == before
    assert neutralize(conn)[rule] == 0  # the second time changes nothing


def test_no_secret_survives_in_the_neutralized_copy(conn) -> None:
    """The production values the cases plant (tokens, keys, links, webhook URL) are gone after one
    neutralization of them all together."""
    for case in CASES.values():
        for statement in case.setup:
            conn.execute(statement)
    neutralize(conn)
    dump = "\n".join(
        str(row)
        for query in (
            "SELECT key, value FROM ir_config_parameter",
            "SELECT account_token FROM iap_account",
            "SELECT client_id FROM account_online_link",
            "SELECT webhook_url FROM ir_act_server",
            "SELECT google_calendar_rtoken, google_calendar_token FROM res_users_settings",
            "SELECT * FROM mail_push_device",
        )
        for row in conn.execute(query).fetchall()
    )
    for secret in ("production-vapid", "production-sfu-key", "wms.example.com", "production-client",
                   "pk.production-mapbox", "production-barcode-key", "1//production-refresh", "ya29.production",
                   "fcm.googleapis.com", "123456789", "extract.api.odoo.com"):  # fmt: skip
        assert secret not in dump, secret
    # the IAP tokens keep their account part (Odoo's rule: the suffix says the account is disabled)
    tokens = [r[0] for r in conn.execute("SELECT account_token FROM iap_account ORDER BY id").fetchall()]
    assert tokens == ["a1b2c3d4e5f6+disabled", "f6e5d4c3+disabled"]
