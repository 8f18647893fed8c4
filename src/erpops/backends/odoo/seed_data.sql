-- Business data for the seeded Odoo-shaped database, generated server-side.
-- Tokens like @orders@ are integers substituted by erpops.backends.odoo.seed (scaled row counts).
-- Timestamps are naive UTC, like Odoo's. Attachments are added afterwards from Python (COPY).

SELECT setseed(0.42);

CREATE TEMP TABLE seed_clock AS SELECT (now() AT TIME ZONE 'UTC')::timestamp(0) AS now;

-- Company, its partner, the two built-in users ---------------------------------------------
INSERT INTO res_company (id, name, currency_id, create_date, write_date)
SELECT 1, 'erpops Distribution Ltd', 1, now - interval '2 years', now - interval '2 years' FROM seed_clock;

INSERT INTO res_partner (id, name, complete_name, company_id, is_company, email, active, create_uid,
                         create_date, write_uid, write_date)
SELECT v.id, v.name, v.name, 1, v.id = 1, v.email, v.id <> 3, 1, c.now - interval '2 years', 1,
       c.now - interval '2 years'
FROM seed_clock c, (VALUES (1, 'erpops Distribution Ltd', 'info@erpops.example'),
                           (2, 'Administrator', 'admin@erpops.example'),
                           (3, 'OdooBot', 'odoobot@erpops.example')) AS v(id, name, email);
SELECT setval('res_partner_id_seq', 3);

INSERT INTO res_users (id, login, partner_id, company_id, active, share, create_date, write_date)
SELECT v.id, v.login, v.partner_id, 1, v.active, false, c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES (1, '__system__', 3, false), (2, 'admin', 2, true)) AS v(id, login, partner_id, active);

-- Customers and vendors (every fifth partner is a vendor) ----------------------------------
INSERT INTO res_partner (name, complete_name, company_id, ref, email, phone, street, city, zip, vat, is_company,
                         customer_rank, supplier_rank, active, create_uid, create_date, write_uid, write_date)
SELECT 'Partner ' || lpad(g::text, greatest(6, length(g::text)), '0'),
       'Partner ' || lpad(g::text, greatest(6, length(g::text)), '0'),
       1,
       'C' || g,
       'contact' || g || '@partner.example',
       '+32 2 555 ' || lpad((g % 10000)::text, 4, '0'),
       g || ' Warehouse Street',
       (ARRAY['Brussels', 'Antwerp', 'Ghent', 'Liege', 'Namur', 'Lille', 'Rotterdam'])[1 + g % 7],
       (1000 + g % 8999)::text,
       'BE0' || lpad((g * 7919 % 1000000000)::text, 9, '0'),
       true,
       CASE WHEN g % 5 = 0 THEN 0 ELSE 1 END,
       CASE WHEN g % 5 = 0 THEN 1 ELSE 0 END,
       g % 97 <> 0,
       2, t.created, 2, least(t.created + random() * interval '60 days', c.now)
FROM generate_series(1, @partners@) g, seed_clock c,
     LATERAL (SELECT c.now - interval '730 days' + (g::float / @partners@) * interval '700 days' AS created) t;

-- Products: one variant per template, plus the delivery service product ---------------------
INSERT INTO product_template (name, description_sale, default_code, type, is_storable, categ_id, uom_id, list_price,
                              sale_ok, purchase_ok, active, create_uid, create_date, write_uid, write_date)
SELECT jsonb_build_object('en_US', 'Product ' || lpad(g::text, greatest(6, length(g::text)), '0'),
                          'fr_BE', 'Produit ' || lpad(g::text, greatest(6, length(g::text)), '0')),
       jsonb_build_object('en_US', 'Distribution item ' || g),
       'P' || lpad(g::text, greatest(6, length(g::text)), '0'),
       'consu', true, 1 + g % 5, 1,
       round((5 + random() * 495)::numeric, 2),
       true, true, g % 53 <> 0,
       2, c.now - interval '720 days', 2, c.now - interval '720 days' + random() * interval '700 days'
FROM generate_series(1, @products@) g, seed_clock c;

INSERT INTO product_template (name, default_code, type, is_storable, categ_id, uom_id, list_price, sale_ok,
                              purchase_ok, create_uid, create_date, write_uid, write_date)
SELECT jsonb_build_object('en_US', 'Standard delivery'), 'DELIVERY', 'service', false, 1, 1, 10, false, false,
       1, now - interval '2 years', 1, now - interval '2 years'
FROM seed_clock;

INSERT INTO product_product (id, product_tmpl_id, default_code, barcode, standard_price, weight, active,
                             create_uid, create_date, write_uid, write_date)
SELECT id, id, default_code, CASE WHEN type = 'consu' THEN '54' || lpad(id::text, greatest(11, length(id::text)), '0') END,
       jsonb_build_object('1', round(list_price * 0.6, 2)), round((random() * 20)::numeric, 2), active,
       create_uid, create_date, write_uid, write_date
FROM product_template;

-- Locations (Odoo's standard tree, one warehouse) ---------------------------------------------
INSERT INTO stock_location (id, name, complete_name, usage, location_id, parent_path, company_id, create_date, write_date)
SELECT v.id, v.name, v.complete, v.usage, v.parent, v.path, v.company, c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES
    (1, 'Physical Locations', 'Physical Locations', 'view', NULL, '1/', NULL),
    (2, 'Partners', 'Partners', 'view', NULL, '2/', NULL),
    (3, 'Virtual Locations', 'Virtual Locations', 'view', NULL, '3/', NULL),
    (4, 'Vendors', 'Partners/Vendors', 'supplier', 2, '2/4/', NULL),
    (5, 'Customers', 'Partners/Customers', 'customer', 2, '2/5/', NULL),
    (6, 'Inventory adjustment', 'Virtual Locations/Inventory adjustment', 'inventory', 3, '3/6/', 1),
    (7, 'WH', 'WH', 'view', 1, '1/7/', 1),
    (8, 'Stock', 'WH/Stock', 'internal', 7, '1/7/8/', 1),
    (9, 'Shelf 1', 'WH/Stock/Shelf 1', 'internal', 8, '1/7/8/9/', 1),
    (10, 'Shelf 2', 'WH/Stock/Shelf 2', 'internal', 8, '1/7/8/10/', 1),
    (11, 'Output', 'WH/Output', 'internal', 7, '1/7/11/', 1),
    (12, 'Transit', 'Physical Locations/Inter-warehouse transit', 'transit', 1, '1/12/', 1)
) AS v(id, name, complete, usage, parent, path, company);

INSERT INTO stock_quant (product_id, company_id, location_id, quantity, reserved_quantity, in_date, create_date, write_date)
SELECT p.id, 1, l.id, q.qty, floor(q.qty * random() * 0.3), t.d, t.d, t.d
FROM product_product p
JOIN product_template pt ON pt.id = p.product_tmpl_id AND pt.is_storable
CROSS JOIN (VALUES (8), (9), (10)) AS l(id)
CROSS JOIN seed_clock c
CROSS JOIN LATERAL (SELECT (10 + floor(random() * 500))::numeric AS qty) q
CROSS JOIN LATERAL (SELECT c.now - random() * interval '300 days' AS d) t
WHERE (p.id + l.id) % 3 <> 0;

-- Sale orders and their lines ------------------------------------------------------------------
INSERT INTO sale_order (name, state, partner_id, partner_invoice_id, partner_shipping_id, company_id, user_id,
                        client_order_ref, date_order, currency_rate, invoice_status, note,
                        create_uid, create_date, write_uid, write_date)
SELECT 'S' || lpad(g::text, greatest(5, length(g::text)), '0'),
       CASE WHEN g % 20 = 0 THEN 'cancel' WHEN g % 10 = 3 THEN 'draft' WHEN g % 10 = 7 THEN 'sent' ELSE 'sale' END,
       p.id, p.id, p.id, 1, 2,
       'PO-' || (g * 31 % 100000),
       t.d, 1.0, 'no', 'Payment terms: 30 days',
       2, t.d, 2, least(t.d + random() * interval '20 days', c.now)
FROM generate_series(1, @orders@) g, seed_clock c,
     LATERAL (SELECT 4 + (g * 7 % @partners@) AS id) p,
     LATERAL (SELECT c.now - interval '365 days' + (g::float / @orders@) * interval '365 days' AS d) t;

INSERT INTO sale_order_line (order_id, sequence, product_id, name, product_uom_qty, qty_delivered, qty_invoiced,
                             price_unit, discount, price_subtotal, price_tax, price_total, state, company_id,
                             create_uid, create_date, write_uid, write_date)
SELECT o.id, n, pp.id, pp.default_code || ' ' || (pt.name ->> 'en_US'), q.qty,
       CASE WHEN o.state = 'sale' THEN q.qty ELSE 0 END,
       CASE WHEN o.state = 'sale' AND o.id % 10 <> 0 THEN q.qty ELSE 0 END,
       pt.list_price, 0, q.qty * pt.list_price, round(q.qty * pt.list_price * 0.15, 2),
       q.qty * pt.list_price + round(q.qty * pt.list_price * 0.15, 2),
       o.state, 1, 2, o.create_date, 2, o.write_date
FROM sale_order o
CROSS JOIN generate_series(1, 3) n
JOIN product_product pp ON pp.id = 1 + ((o.id * 13 + n * 101) % @products@)
JOIN product_template pt ON pt.id = pp.product_tmpl_id
CROSS JOIN LATERAL (SELECT (1 + floor(random() * 20))::numeric AS qty) q;

UPDATE sale_order o
SET amount_untaxed = s.untaxed, amount_tax = s.tax, amount_total = s.untaxed + s.tax,
    invoice_status = CASE WHEN o.state = 'sale' AND o.id % 10 <> 0 THEN 'invoiced'
                          WHEN o.state = 'sale' THEN 'to invoice' ELSE 'no' END
FROM (SELECT order_id, sum(price_subtotal) AS untaxed, sum(price_tax)::numeric AS tax
      FROM sale_order_line GROUP BY order_id) s
WHERE s.order_id = o.id;

-- Purchase orders (one line each) ----------------------------------------------------------------
INSERT INTO purchase_order (name, state, partner_id, company_id, currency_id, user_id, date_order, date_approve,
                            date_planned, invoice_status, receipt_status, create_uid, create_date, write_uid, write_date)
SELECT 'P' || lpad(g::text, greatest(5, length(g::text)), '0'),
       CASE WHEN g % 30 = 0 THEN 'cancel' WHEN g % 15 = 7 THEN 'draft' ELSE 'purchase' END,
       5 * (1 + g % greatest(@partners@ / 5, 1)), 1, 1, 2, t.d,
       CASE WHEN g % 30 = 0 OR g % 15 = 7 THEN NULL ELSE t.d + interval '1 hour' END, t.d + interval '5 days',
       'no', CASE WHEN g % 9 = 0 THEN 'pending' ELSE 'full' END,
       2, t.d, 2, least(t.d + interval '6 days', c.now)
FROM generate_series(1, @receipts@) g, seed_clock c,
     LATERAL (SELECT c.now - interval '365 days' + (g::float / @receipts@) * interval '365 days' AS d) t;

INSERT INTO purchase_order_line (order_id, sequence, product_id, name, product_qty, product_uom_qty, qty_received,
                                 price_unit, price_subtotal, price_tax, price_total, date_planned, state, company_id,
                                 partner_id, create_uid, create_date, write_uid, write_date)
SELECT o.id, 10, pp.id, pp.default_code, q.qty, q.qty, CASE WHEN o.state = 'purchase' THEN q.qty ELSE 0 END,
       (pp.standard_price ->> '1')::numeric, q.qty * (pp.standard_price ->> '1')::numeric,
       round(q.qty * (pp.standard_price ->> '1')::numeric * 0.15, 2),
       q.qty * (pp.standard_price ->> '1')::numeric + round(q.qty * (pp.standard_price ->> '1')::numeric * 0.15, 2),
       o.date_planned, o.state, 1, o.partner_id, 2, o.create_date, 2, o.write_date
FROM purchase_order o
JOIN product_product pp ON pp.id = 1 + (o.id * 17 % @products@)
CROSS JOIN LATERAL (SELECT (10 + floor(random() * 200))::numeric AS qty) q;

UPDATE purchase_order o
SET amount_untaxed = l.price_subtotal, amount_tax = l.price_tax, amount_total = l.price_total
FROM purchase_order_line l WHERE l.order_id = o.id;

-- Pickings and stock moves: deliveries of confirmed sale orders, receipts of purchase orders --
INSERT INTO stock_picking_type (id, name, code, sequence_code, default_location_src_id, default_location_dest_id,
                                company_id, create_date, write_date)
SELECT v.id, jsonb_build_object('en_US', v.name), v.code, v.seq, v.src, v.dest, 1, c.now - interval '2 years',
       c.now - interval '2 years'
FROM seed_clock c, (VALUES (1, 'Receipts', 'incoming', 'IN', 4, 8), (2, 'Delivery Orders', 'outgoing', 'OUT', 8, 5),
                           (3, 'Internal Transfers', 'internal', 'INT', 8, 9)) AS v(id, name, code, seq, src, dest);

INSERT INTO stock_picking (name, origin, state, picking_type_id, partner_id, location_id, location_dest_id,
                           scheduled_date, date_done, sale_id, company_id, create_uid, create_date, write_uid, write_date)
SELECT 'WH/OUT/' || lpad(o.id::text, greatest(5, length(o.id::text)), '0'), o.name, CASE WHEN o.id % 7 = 0 THEN 'assigned' ELSE 'done' END, 2,
       o.partner_id, 8, 5, o.date_order + interval '2 days',
       CASE WHEN o.id % 7 <> 0 THEN o.date_order + interval '2 days' END, o.id, 1,
       2, o.date_order, 2, least(o.write_date + interval '2 days', c.now)
FROM sale_order o CROSS JOIN seed_clock c WHERE o.state = 'sale';

INSERT INTO stock_picking (name, origin, state, picking_type_id, partner_id, location_id, location_dest_id,
                           scheduled_date, date_done, purchase_id, company_id, create_uid, create_date, write_uid, write_date)
SELECT 'WH/IN/' || lpad(o.id::text, greatest(5, length(o.id::text)), '0'), o.name, CASE WHEN o.id % 9 = 0 THEN 'assigned' ELSE 'done' END, 1,
       o.partner_id, 4, 8, o.date_planned, CASE WHEN o.id % 9 <> 0 THEN o.date_planned END, o.id, 1,
       2, o.date_approve, 2, o.write_date
FROM purchase_order o WHERE o.state = 'purchase';

INSERT INTO stock_move (name, reference, origin, state, picking_id, product_id, product_uom_qty, quantity, product_uom,
                        location_id, location_dest_id, sale_line_id, partner_id, company_id, date,
                        create_uid, create_date, write_uid, write_date)
SELECT pt.name ->> 'en_US', p.name, o.name, p.state, p.id, l.product_id, l.product_uom_qty, l.product_uom_qty, 1, 8, 5,
       l.id, o.partner_id, 1, o.date_order + interval '2 days', 2, p.create_date, 2, p.write_date
FROM sale_order_line l
JOIN sale_order o ON o.id = l.order_id
JOIN stock_picking p ON p.sale_id = o.id
JOIN product_product pp ON pp.id = l.product_id
JOIN product_template pt ON pt.id = pp.product_tmpl_id;

INSERT INTO stock_move (name, reference, origin, state, picking_id, product_id, product_uom_qty, quantity, product_uom,
                        location_id, location_dest_id, purchase_line_id, partner_id, company_id, date,
                        create_uid, create_date, write_uid, write_date)
SELECT l.name, p.name, o.name, p.state, p.id, l.product_id, l.product_qty,
       CASE WHEN p.state = 'done' THEN l.product_qty ELSE 0 END, 1, 4, 8, l.id, o.partner_id, 1, p.scheduled_date,
       2, p.create_date, 2, p.write_date
FROM purchase_order_line l
JOIN purchase_order o ON o.id = l.order_id
JOIN stock_picking p ON p.purchase_id = o.id;

-- Accounting: chart, journals, invoices, vendor bills, miscellaneous entries -----------------
INSERT INTO account_account (id, name, code_store, account_type, reconcile, create_date, write_date)
SELECT v.id, jsonb_build_object('en_US', v.name), jsonb_build_object('1', v.code), v.type, v.rec,
       c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES
    (1, '121000', 'Account Receivable', 'asset_receivable', true),
    (2, '211000', 'Account Payable', 'liability_payable', true),
    (3, '400000', 'Product Sales', 'income', false),
    (4, '600000', 'Expenses', 'expense', false),
    (5, '251000', 'Tax Received', 'liability_current', false),
    (6, '131000', 'Tax Paid', 'asset_current', false),
    (7, '101401', 'Bank', 'asset_cash', false),
    (8, '620000', 'Salaries', 'expense', false)
) AS v(id, code, name, type, rec);

INSERT INTO account_journal (id, name, code, type, company_id, default_account_id, create_date, write_date)
SELECT v.id, jsonb_build_object('en_US', v.name), v.code, v.type, 1, v.acc, c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES (1, 'Customer Invoices', 'INV', 'sale', 3), (2, 'Vendor Bills', 'BILL', 'purchase', 4),
                           (3, 'Miscellaneous Operations', 'MISC', 'general', NULL), (4, 'Bank', 'BNK1', 'bank', 7))
     AS v(id, name, code, type, acc);

-- Customer invoices: one per confirmed, invoiced order (draft for a few recent ones).
CREATE TEMP TABLE seed_invoice AS
SELECT o.id AS order_id, o.partner_id, o.name AS origin, o.amount_untaxed, o.amount_tax, o.amount_total,
       (o.date_order + interval '3 days')::date AS date, o.write_date,
       CASE WHEN o.id % 41 = 0 THEN 'draft' ELSE 'posted' END AS state
FROM sale_order o WHERE o.state = 'sale' AND o.id % 10 <> 0;

INSERT INTO account_move (name, ref, state, move_type, date, invoice_date, invoice_date_due, journal_id, company_id,
                          partner_id, invoice_origin, payment_state, amount_untaxed, amount_tax, amount_total,
                          amount_residual, create_uid, create_date, write_uid, write_date)
SELECT CASE WHEN i.state = 'posted'
            THEN 'INV/' || extract(year FROM i.date) || '/' || lpad(i.seq::text, greatest(5, length(i.seq::text)), '0')
            ELSE '/' END,
       NULL, i.state, 'out_invoice', i.date, i.date, i.date + 30, 1, 1, i.partner_id, i.origin,
       CASE WHEN i.order_id % 3 = 0 THEN 'not_paid' ELSE 'paid' END,
       i.amount_untaxed, i.amount_tax, i.amount_total,
       CASE WHEN i.order_id % 3 = 0 THEN i.amount_total ELSE 0 END,
       2, i.date::timestamp, 2, i.write_date
FROM (SELECT *, row_number() OVER (PARTITION BY state, extract(year FROM date) ORDER BY order_id) AS seq
      FROM seed_invoice) i
ORDER BY i.order_id;

-- Income lines (one per order line), a tax line and the receivable: debits = credits per move.
INSERT INTO account_move_line (move_id, journal_id, company_id, account_id, partner_id, product_id, name, display_type,
                               parent_state, date, quantity, price_unit, debit, credit, balance, amount_currency,
                               reconciled, create_uid, create_date, write_uid, write_date)
SELECT m.id, 1, 1, 3, m.partner_id, l.product_id, l.name, 'product', m.state, m.date, l.product_uom_qty, l.price_unit,
       0, l.price_subtotal, -l.price_subtotal, -l.price_subtotal, false, 2, m.create_date, 2, m.write_date
FROM account_move m JOIN sale_order o ON o.name = m.invoice_origin JOIN sale_order_line l ON l.order_id = o.id
WHERE m.move_type = 'out_invoice'
UNION ALL
SELECT m.id, 1, 1, 5, m.partner_id, NULL, 'VAT 15%', 'tax', m.state, m.date, NULL, NULL,
       0, m.amount_tax, -m.amount_tax, -m.amount_tax, false, 2, m.create_date, 2, m.write_date
FROM account_move m WHERE m.move_type = 'out_invoice'
UNION ALL
SELECT m.id, 1, 1, 1, m.partner_id, NULL, m.name, 'payment_term', m.state, m.date, NULL, NULL,
       m.amount_total, 0, m.amount_total, m.amount_total, m.payment_state = 'paid', 2, m.create_date, 2, m.write_date
FROM account_move m WHERE m.move_type = 'out_invoice';

-- Vendor bills.
INSERT INTO account_move (name, ref, state, move_type, date, invoice_date, invoice_date_due, journal_id, company_id,
                          partner_id, payment_state, amount_untaxed, amount_tax, amount_total, amount_residual,
                          create_uid, create_date, write_uid, write_date)
SELECT 'BILL/' || extract(year FROM t.d) || '/' || lpad(g::text, greatest(5, length(g::text)), '0'), 'VB-' || g, 'posted', 'in_invoice',
       t.d, t.d, t.d + 30, 2, 1, 5 * (1 + g % greatest(@partners@ / 5, 1)), 'paid', a.untaxed, round(a.untaxed * 0.15, 2),
       a.untaxed + round(a.untaxed * 0.15, 2), 0, 2, t.d::timestamp, 2, least(t.d + interval '5 days', c.now)
FROM generate_series(1, @bills@) g, seed_clock c,
     LATERAL (SELECT round((50 + random() * 5000)::numeric, 2) AS untaxed) a,
     LATERAL (SELECT (c.now - interval '365 days' + (g::float / @bills@) * interval '364 days')::date AS d) t;

INSERT INTO account_move_line (move_id, journal_id, company_id, account_id, partner_id, name, display_type, parent_state,
                               date, debit, credit, balance, amount_currency, reconciled,
                               create_uid, create_date, write_uid, write_date)
SELECT m.id, 2, 1, v.account, m.partner_id, v.label, v.kind, m.state, m.date, v.debit, v.credit, v.debit - v.credit,
       v.debit - v.credit, false, 2, m.create_date, 2, m.write_date
FROM account_move m
CROSS JOIN LATERAL (VALUES (4, 'Purchased goods', 'product', m.amount_untaxed, 0::numeric),
                           (6, 'VAT 15%', 'tax', m.amount_tax, 0::numeric),
                           (2, m.name, 'payment_term', 0::numeric, m.amount_total)) AS v(account, label, kind, debit, credit)
WHERE m.move_type = 'in_invoice';

-- Miscellaneous entries (salaries), a few cancelled.
INSERT INTO account_move (name, ref, state, move_type, date, journal_id, company_id, amount_total,
                          create_uid, create_date, write_uid, write_date)
SELECT 'MISC/' || extract(year FROM t.d) || '/' || lpad(g::text, greatest(5, length(g::text)), '0'), 'Payroll ' || g,
       CASE WHEN g % 25 = 0 THEN 'cancel' ELSE 'posted' END, 'entry', t.d, 3, 1,
       round((1000 + random() * 9000)::numeric, 2), 2, t.d::timestamp, 2, least(t.d + interval '1 day', c.now)
FROM generate_series(1, @entries@) g, seed_clock c,
     LATERAL (SELECT (c.now - interval '365 days' + (g::float / @entries@) * interval '364 days')::date AS d) t;

INSERT INTO account_move_line (move_id, journal_id, company_id, account_id, name, display_type, parent_state, date,
                               debit, credit, balance, amount_currency, reconciled,
                               create_uid, create_date, write_uid, write_date)
SELECT m.id, 3, 1, v.account, m.ref, 'product', m.state, m.date, v.debit, v.credit, v.debit - v.credit,
       v.debit - v.credit, false, 2, m.create_date, 2, m.write_date
FROM account_move m
CROSS JOIN LATERAL (VALUES (8, m.amount_total, 0::numeric), (7, 0::numeric, m.amount_total)) AS v(account, debit, credit)
WHERE m.move_type = 'entry';

-- Configuration: modules, parameters, scheduled jobs, mail servers, providers, carriers -----
INSERT INTO ir_module_module (name, state, latest_version, author, shortdesc, application, license, create_date, write_date)
SELECT v.name, v.state, CASE WHEN v.state = 'installed' THEN v.version END, 'Odoo S.A.',
       jsonb_build_object('en_US', initcap(replace(v.name, '_', ' '))), v.app, 'LGPL-3',
       c.now - interval '2 years', c.now - interval '30 days'
FROM seed_clock c, (VALUES
    ('base', 'installed', '18.0.1.3', false), ('web', 'installed', '18.0.1.0', false),
    ('bus', 'installed', '18.0.1.0', false), ('mail', 'installed', '18.0.1.15', false),
    ('uom', 'installed', '18.0.1.0', false), ('product', 'installed', '18.0.1.2', false),
    ('payment', 'installed', '18.0.2.0', false), ('account', 'installed', '18.0.1.3', true),
    ('sale', 'installed', '18.0.1.2', false), ('sale_management', 'installed', '18.0.1.0', true),
    ('stock', 'installed', '18.0.1.1', true), ('stock_account', 'installed', '18.0.1.1', false),
    ('sale_stock', 'installed', '18.0.1.0', false), ('purchase', 'installed', '18.0.1.2', true),
    ('purchase_stock', 'installed', '18.0.1.0', false), ('delivery', 'installed', '18.0.1.0', false),
    ('stock_delivery', 'installed', '18.0.1.0', false), ('website', 'uninstalled', NULL, true),
    ('mrp', 'uninstalled', NULL, true), ('hr', 'uninstalled', NULL, true), ('point_of_sale', 'uninstalled', NULL, true)
) AS v(name, state, version, app);

INSERT INTO ir_config_parameter (key, value, create_date, write_date)
SELECT v.key, v.value, c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES
    ('database.uuid', gen_random_uuid()::text),
    ('database.secret', gen_random_uuid()::text),
    ('database.create_date', to_char((SELECT now - interval '2 years' FROM seed_clock), 'YYYY-MM-DD HH24:MI:SS')),
    ('web.base.url', 'http://localhost:8069'),
    ('base.login_cooldown_after_failure', '1'),
    ('mail.catchall.domain', 'erpops.example'),
    ('sale.default_confirmation_template', '12')
) AS v(key, value);

INSERT INTO ir_act_server (name, model_name, state, code, usage, create_date, write_date)
SELECT jsonb_build_object('en_US', v.name), v.model, 'code', v.code, 'ir_cron', c.now - interval '2 years',
       c.now - interval '2 years'
FROM seed_clock c, (VALUES
    ('Base: Auto-vacuum internal data', 'ir.autovacuum', 'model._run_vacuum_cleaner()'),
    ('Mail: Email Queue Manager', 'mail.mail', 'model.process_email_queue()'),
    ('Mail: Fetchmail Service', 'fetchmail.server', 'model._fetch_mails()'),
    ('Procurement: run scheduler', 'procurement.group', 'model.run_scheduler(True)'),
    ('Account: Post draft entries with auto_post enabled', 'account.move', 'model._autopost_draft_entries()'),
    ('Payment: Post-process transactions', 'payment.transaction', 'model._cron_post_process()'),
    ('Sales: Send quotation reminders', 'sale.order', 'model._cron_send_reminders()'),
    ('Base: Portal Users Deletion', 'res.users.deletion', 'model._gc_portal_users()')
) AS v(name, model, code);

INSERT INTO ir_cron (ir_actions_server_id, cron_name, user_id, active, interval_number, interval_type, nextcall,
                     lastcall, priority, create_date, write_date)
SELECT a.id, a.name ->> 'en_US', 1, a.id <> 7, v.num, v.type, c.now + v.num * ('1 ' || v.type)::interval,
       c.now - interval '1 hour', 5, c.now - interval '2 years', c.now - interval '1 hour'
FROM ir_act_server a
JOIN (VALUES (1, 1, 'days'), (2, 1, 'hours'), (3, 5, 'minutes'), (4, 1, 'days'), (5, 1, 'hours'),
             (6, 10, 'minutes'), (7, 1, 'days'), (8, 1, 'days')) AS v(id, num, type) ON v.id = a.id
CROSS JOIN seed_clock c;

INSERT INTO ir_mail_server (name, from_filter, smtp_host, smtp_port, smtp_authentication, smtp_user, smtp_pass,
                            smtp_encryption, smtp_debug, sequence, active, create_date, write_date)
SELECT v.name, 'erpops.example', v.host, v.port, 'login', v.usr, v.pass, v.enc, false, v.seq, v.active,
       c.now - interval '2 years', c.now - interval '90 days'
FROM seed_clock c, (VALUES
    ('Production SMTP', 'smtp.mail.example', 587, 'outbound@erpops.example', 'not-a-real-password', 'starttls', 10, true),
    ('Backup relay', 'relay.mail.example', 465, 'relay@erpops.example', 'not-a-real-password-either', 'ssl', 20, true)
) AS v(name, host, port, usr, pass, enc, seq, active);

INSERT INTO fetchmail_server (name, active, state, server, port, server_type, is_ssl, "user", password, priority,
                              date, create_date, write_date)
SELECT 'Support inbox', true, 'done', 'imap.mail.example', 993, 'imap', true, 'support@erpops.example',
       'not-a-real-password', 5, now - interval '5 minutes', now - interval '2 years', now - interval '90 days'
FROM seed_clock;

INSERT INTO payment_provider (name, code, state, company_id, is_published, create_date, write_date)
SELECT jsonb_build_object('en_US', v.name), v.code, v.state, 1, v.state = 'enabled',
       c.now - interval '2 years', c.now - interval '60 days'
FROM seed_clock c, (VALUES ('Stripe', 'stripe', 'enabled'), ('PayPal', 'paypal', 'test'),
                           ('Adyen', 'adyen', 'disabled'), ('Wire Transfer', 'custom', 'enabled')) AS v(name, code, state);

INSERT INTO delivery_carrier (name, delivery_type, product_id, prod_environment, active, company_id, create_date, write_date)
SELECT jsonb_build_object('en_US', v.name), v.type, (SELECT id FROM product_template WHERE default_code = 'DELIVERY'),
       v.prod, true, 1, c.now - interval '2 years', c.now - interval '60 days'
FROM seed_clock c, (VALUES ('Standard delivery', 'fixed', false), ('DHL Express', 'dhl', true),
                           ('FedEx International', 'fedex', true)) AS v(name, type, prod);

INSERT INTO ir_ui_view (name, key, model, type, arch_db, mode, active, priority, create_date, write_date)
SELECT 'neutralize_banner', 'web.neutralize_banner', NULL, 'qweb',
       jsonb_build_object('en_US', '<t t-name="web.neutralize_banner"><span class="badge text-bg-danger">Neutralized</span></t>'),
       'extension', false, 16, now - interval '2 years', now - interval '2 years'
FROM seed_clock;

-- XML ids of the records above (what Odoo code and neutralize.sql find them by).
INSERT INTO ir_model_data (module, name, model, res_id, noupdate, create_date, write_date)
SELECT v.module, v.name, v.model, v.res_id, v.noupdate, c.now - interval '2 years', c.now - interval '2 years'
FROM seed_clock c, (VALUES
    ('base', 'main_company', 'res.company', 1, true), ('base', 'main_partner', 'res.partner', 1, true),
    ('base', 'partner_admin', 'res.partner', 2, true), ('base', 'partner_root', 'res.partner', 3, true),
    ('base', 'user_root', 'res.users', 1, true), ('base', 'user_admin', 'res.users', 2, true),
    ('stock', 'stock_location_locations', 'stock.location', 1, true),
    ('stock', 'stock_location_locations_partner', 'stock.location', 2, true),
    ('stock', 'stock_location_locations_virtual', 'stock.location', 3, true),
    ('stock', 'stock_location_suppliers', 'stock.location', 4, true),
    ('stock', 'stock_location_customers', 'stock.location', 5, true),
    ('stock', 'stock_location_stock', 'stock.location', 8, true),
    ('web', 'neutralize_banner', 'ir.ui.view', (SELECT id FROM ir_ui_view WHERE key = 'web.neutralize_banner'), false)
) AS v(module, name, model, res_id, noupdate);

CREATE TEMP TABLE seed_cron_xmlid (action_id integer, xmlid varchar);
INSERT INTO seed_cron_xmlid VALUES
    (1, 'base.autovacuum_job'), (2, 'mail.ir_cron_mail_scheduler_action'), (3, 'mail.ir_cron_mail_gateway_action'),
    (4, 'stock.ir_cron_scheduler_action'), (5, 'account.ir_cron_auto_post_draft_entry'),
    (6, 'payment.cron_post_process_payment_tx'), (7, 'sale.send_quotation_reminders'),
    (8, 'base.ir_cron_res_users_deletion');

INSERT INTO ir_model_data (module, name, model, res_id, noupdate, create_date, write_date)
SELECT split_part(x.xmlid, '.', 1), split_part(x.xmlid, '.', 2), 'ir.cron', j.id, true, j.create_date, j.create_date
FROM seed_cron_xmlid x JOIN ir_cron j ON j.ir_actions_server_id = x.action_id
UNION ALL
SELECT split_part(x.xmlid, '.', 1), split_part(x.xmlid, '.', 2) || '_ir_actions_server', 'ir.actions.server',
       x.action_id, true, a.create_date, a.create_date
FROM seed_cron_xmlid x JOIN ir_act_server a ON a.id = x.action_id;

INSERT INTO ir_model_data (module, name, model, res_id, noupdate, create_date, write_date)
SELECT 'base', 'module_' || m.name, 'ir.module.module', m.id, true, m.create_date, m.write_date FROM ir_module_module m;

DROP TABLE seed_invoice, seed_cron_xmlid;
