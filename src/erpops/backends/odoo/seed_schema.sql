-- An Odoo-18-shaped distribution database (the tables and columns erpops's drills rely on).
-- Table and column names follow Odoo 18; translatable names are jsonb ({"en_US": "..."}).
-- Loaded by erpops.backends.odoo.seed before the data (seed_data.sql); foreign keys come after the data.

CREATE TABLE res_company (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    currency_id integer,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE res_partner (
    id serial PRIMARY KEY,
    name varchar,
    complete_name varchar,
    company_id integer,
    parent_id integer,
    ref varchar,
    email varchar,
    phone varchar,
    street varchar,
    city varchar,
    zip varchar,
    country_id integer,
    vat varchar,
    is_company boolean DEFAULT false,
    customer_rank integer DEFAULT 0,
    supplier_rank integer DEFAULT 0,
    active boolean DEFAULT true,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE res_users (
    id serial PRIMARY KEY,
    login varchar NOT NULL UNIQUE,
    partner_id integer NOT NULL,
    company_id integer NOT NULL,
    active boolean DEFAULT true,
    share boolean DEFAULT false,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE product_template (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    description_sale jsonb,
    default_code varchar,
    type varchar NOT NULL DEFAULT 'consu',
    is_storable boolean DEFAULT true,
    categ_id integer,
    uom_id integer,
    list_price numeric,
    sale_ok boolean DEFAULT true,
    purchase_ok boolean DEFAULT true,
    active boolean DEFAULT true,
    company_id integer,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE product_product (
    id serial PRIMARY KEY,
    product_tmpl_id integer NOT NULL,
    default_code varchar,
    barcode varchar,
    standard_price jsonb,
    weight numeric,
    active boolean DEFAULT true,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE stock_location (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    complete_name varchar,
    usage varchar NOT NULL,
    location_id integer,
    parent_path varchar,
    barcode varchar,
    company_id integer,
    active boolean DEFAULT true,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE stock_quant (
    id serial PRIMARY KEY,
    product_id integer NOT NULL,
    company_id integer,
    location_id integer NOT NULL,
    lot_id integer,
    quantity numeric,
    reserved_quantity numeric NOT NULL DEFAULT 0,
    in_date timestamp NOT NULL,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE sale_order (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    state varchar,
    partner_id integer NOT NULL,
    partner_invoice_id integer,
    partner_shipping_id integer,
    company_id integer NOT NULL,
    user_id integer,
    client_order_ref varchar,
    origin varchar,
    date_order timestamp NOT NULL,
    commitment_date timestamp,
    amount_untaxed numeric,
    amount_tax numeric,
    amount_total numeric,
    currency_rate numeric,
    invoice_status varchar,
    note text,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE sale_order_line (
    id serial PRIMARY KEY,
    order_id integer NOT NULL,
    sequence integer,
    product_id integer,
    name text NOT NULL,
    product_uom_qty numeric NOT NULL,
    qty_delivered numeric,
    qty_invoiced numeric,
    price_unit numeric NOT NULL,
    discount numeric,
    price_subtotal numeric,
    price_tax double precision,
    price_total numeric,
    state varchar,
    company_id integer,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE purchase_order (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    state varchar,
    partner_id integer NOT NULL,
    company_id integer NOT NULL,
    currency_id integer NOT NULL,
    user_id integer,
    partner_ref varchar,
    origin varchar,
    date_order timestamp NOT NULL,
    date_approve timestamp,
    date_planned timestamp,
    amount_untaxed numeric,
    amount_tax numeric,
    amount_total numeric,
    invoice_status varchar,
    receipt_status varchar,
    notes text,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE purchase_order_line (
    id serial PRIMARY KEY,
    order_id integer NOT NULL,
    sequence integer,
    product_id integer,
    name text NOT NULL,
    product_qty numeric NOT NULL,
    product_uom_qty numeric,
    qty_received numeric,
    qty_invoiced numeric,
    price_unit numeric NOT NULL,
    price_subtotal numeric,
    price_tax double precision,
    price_total numeric,
    date_planned timestamp,
    state varchar,
    company_id integer,
    partner_id integer,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE stock_picking_type (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar NOT NULL,
    sequence_code varchar NOT NULL,
    default_location_src_id integer,
    default_location_dest_id integer,
    company_id integer NOT NULL,
    active boolean DEFAULT true,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE stock_picking (
    id serial PRIMARY KEY,
    name varchar,
    origin varchar,
    state varchar,
    picking_type_id integer NOT NULL,
    partner_id integer,
    location_id integer NOT NULL,
    location_dest_id integer NOT NULL,
    scheduled_date timestamp NOT NULL,
    date_done timestamp,
    sale_id integer,
    purchase_id integer,
    company_id integer,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE stock_move (
    id serial PRIMARY KEY,
    name varchar,
    reference varchar,
    origin varchar,
    state varchar,
    picking_id integer,
    product_id integer NOT NULL,
    product_uom_qty numeric NOT NULL,
    quantity numeric,
    product_uom integer,
    location_id integer NOT NULL,
    location_dest_id integer NOT NULL,
    sale_line_id integer,
    purchase_line_id integer,
    partner_id integer,
    company_id integer NOT NULL,
    date timestamp NOT NULL,
    priority varchar DEFAULT '0',
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE account_account (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code_store jsonb,
    account_type varchar NOT NULL,
    reconcile boolean DEFAULT false,
    active boolean DEFAULT true,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE account_journal (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar NOT NULL,
    type varchar NOT NULL,
    company_id integer NOT NULL,
    default_account_id integer,
    active boolean DEFAULT true,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE account_move (
    id serial PRIMARY KEY,
    name varchar,
    ref varchar,
    state varchar NOT NULL,
    move_type varchar NOT NULL,
    date date NOT NULL,
    invoice_date date,
    invoice_date_due date,
    journal_id integer NOT NULL,
    company_id integer,
    currency_id integer NOT NULL DEFAULT 1,
    partner_id integer,
    invoice_origin varchar,
    payment_state varchar,
    amount_untaxed numeric,
    amount_tax numeric,
    amount_total numeric,
    amount_residual numeric,
    narration text,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE account_move_line (
    id serial PRIMARY KEY,
    move_id integer NOT NULL,
    journal_id integer,
    company_id integer,
    account_id integer,
    partner_id integer,
    product_id integer,
    name varchar,
    display_type varchar,
    parent_state varchar,
    date date,
    quantity numeric,
    price_unit numeric,
    debit numeric,
    credit numeric,
    balance numeric,
    amount_currency numeric,
    currency_id integer NOT NULL DEFAULT 1,
    reconciled boolean,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE ir_attachment (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    description text,
    res_model varchar,
    res_field varchar,
    res_id integer,
    company_id integer,
    type varchar NOT NULL,
    url varchar(1024),
    public boolean,
    access_token varchar,
    db_datas bytea,
    store_fname varchar,
    file_size integer,
    checksum varchar(40),
    mimetype varchar,
    index_content text,
    original_id integer,
    create_uid integer,
    create_date timestamp,
    write_uid integer,
    write_date timestamp
);

CREATE TABLE ir_act_server (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    type varchar NOT NULL DEFAULT 'ir.actions.server',
    model_name varchar,
    state varchar NOT NULL DEFAULT 'code',
    code text,
    usage varchar DEFAULT 'ir_cron',
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE ir_cron (
    id serial PRIMARY KEY,
    ir_actions_server_id integer NOT NULL,
    cron_name varchar,
    user_id integer NOT NULL,
    active boolean DEFAULT true,
    interval_number integer NOT NULL,
    interval_type varchar NOT NULL,
    nextcall timestamp NOT NULL,
    lastcall timestamp,
    priority integer,
    failure_count integer DEFAULT 0,
    first_failure_date timestamp,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE ir_mail_server (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    from_filter varchar,
    smtp_host varchar,
    smtp_port integer,
    smtp_authentication varchar NOT NULL,
    smtp_user varchar,
    smtp_pass varchar,
    smtp_encryption varchar NOT NULL,
    smtp_debug boolean,
    sequence integer,
    active boolean DEFAULT true,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE fetchmail_server (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    active boolean DEFAULT true,
    state varchar,
    server varchar,
    port integer,
    server_type varchar NOT NULL,
    is_ssl boolean,
    "user" varchar,
    password varchar,
    object_id integer,
    priority integer,
    date timestamp,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE payment_provider (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar NOT NULL,
    state varchar NOT NULL,
    company_id integer NOT NULL,
    is_published boolean DEFAULT false,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE delivery_carrier (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    delivery_type varchar NOT NULL,
    product_id integer NOT NULL,
    prod_environment boolean DEFAULT false,
    debug_logging boolean DEFAULT false,
    active boolean DEFAULT true,
    company_id integer,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE ir_module_module (
    id serial PRIMARY KEY,
    name varchar NOT NULL UNIQUE,
    state varchar,
    latest_version varchar,
    author varchar,
    shortdesc jsonb,
    category_id integer,
    application boolean DEFAULT false,
    license varchar,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE ir_model_data (
    id serial PRIMARY KEY,
    module varchar NOT NULL,
    name varchar NOT NULL,
    model varchar NOT NULL,
    res_id integer,
    noupdate boolean DEFAULT false,
    create_date timestamp,
    write_date timestamp,
    UNIQUE (module, name)
);

CREATE TABLE ir_config_parameter (
    id serial PRIMARY KEY,
    key varchar NOT NULL UNIQUE,
    value text NOT NULL,
    create_date timestamp,
    write_date timestamp
);

CREATE TABLE ir_ui_view (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    key varchar,
    model varchar,
    type varchar,
    arch_db jsonb,
    inherit_id integer,
    mode varchar NOT NULL DEFAULT 'primary',
    active boolean DEFAULT true,
    priority integer NOT NULL DEFAULT 16,
    create_date timestamp,
    write_date timestamp
);

-- @constraints
-- Run after the data is loaded.

ALTER TABLE res_partner ADD FOREIGN KEY (company_id) REFERENCES res_company (id) ON DELETE SET NULL;
ALTER TABLE res_users ADD FOREIGN KEY (partner_id) REFERENCES res_partner (id) ON DELETE RESTRICT;
ALTER TABLE product_product ADD FOREIGN KEY (product_tmpl_id) REFERENCES product_template (id) ON DELETE CASCADE;
ALTER TABLE stock_location ADD FOREIGN KEY (location_id) REFERENCES stock_location (id) ON DELETE CASCADE;
ALTER TABLE stock_quant ADD FOREIGN KEY (product_id) REFERENCES product_product (id) ON DELETE RESTRICT;
ALTER TABLE stock_quant ADD FOREIGN KEY (location_id) REFERENCES stock_location (id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (partner_id) REFERENCES res_partner (id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (company_id) REFERENCES res_company (id) ON DELETE RESTRICT;
ALTER TABLE sale_order_line ADD FOREIGN KEY (order_id) REFERENCES sale_order (id) ON DELETE CASCADE;
ALTER TABLE sale_order_line ADD FOREIGN KEY (product_id) REFERENCES product_product (id) ON DELETE RESTRICT;
ALTER TABLE stock_move ADD FOREIGN KEY (product_id) REFERENCES product_product (id) ON DELETE RESTRICT;
ALTER TABLE stock_move ADD FOREIGN KEY (location_id) REFERENCES stock_location (id) ON DELETE RESTRICT;
ALTER TABLE stock_move ADD FOREIGN KEY (location_dest_id) REFERENCES stock_location (id) ON DELETE RESTRICT;
ALTER TABLE purchase_order ADD FOREIGN KEY (partner_id) REFERENCES res_partner (id) ON DELETE RESTRICT;
ALTER TABLE purchase_order_line ADD FOREIGN KEY (order_id) REFERENCES purchase_order (id) ON DELETE CASCADE;
ALTER TABLE purchase_order_line ADD FOREIGN KEY (product_id) REFERENCES product_product (id) ON DELETE RESTRICT;
ALTER TABLE stock_picking ADD FOREIGN KEY (picking_type_id) REFERENCES stock_picking_type (id) ON DELETE RESTRICT;
ALTER TABLE stock_picking ADD FOREIGN KEY (sale_id) REFERENCES sale_order (id) ON DELETE SET NULL;
ALTER TABLE stock_picking ADD FOREIGN KEY (purchase_id) REFERENCES purchase_order (id) ON DELETE SET NULL;
ALTER TABLE stock_move ADD FOREIGN KEY (picking_id) REFERENCES stock_picking (id) ON DELETE SET NULL;
ALTER TABLE stock_move ADD FOREIGN KEY (purchase_line_id) REFERENCES purchase_order_line (id) ON DELETE SET NULL;
ALTER TABLE stock_move ADD FOREIGN KEY (sale_line_id) REFERENCES sale_order_line (id) ON DELETE SET NULL;
ALTER TABLE account_journal ADD FOREIGN KEY (default_account_id) REFERENCES account_account (id) ON DELETE RESTRICT;
ALTER TABLE account_move ADD FOREIGN KEY (journal_id) REFERENCES account_journal (id) ON DELETE RESTRICT;
ALTER TABLE account_move ADD FOREIGN KEY (partner_id) REFERENCES res_partner (id) ON DELETE RESTRICT;
ALTER TABLE account_move_line ADD FOREIGN KEY (move_id) REFERENCES account_move (id) ON DELETE CASCADE;
ALTER TABLE account_move_line ADD FOREIGN KEY (account_id) REFERENCES account_account (id) ON DELETE RESTRICT;
ALTER TABLE ir_cron ADD FOREIGN KEY (ir_actions_server_id) REFERENCES ir_act_server (id) ON DELETE RESTRICT;
ALTER TABLE delivery_carrier ADD FOREIGN KEY (product_id) REFERENCES product_product (id) ON DELETE RESTRICT;

CREATE INDEX res_partner__name_index ON res_partner (name);
CREATE INDEX product_product__product_tmpl_id_index ON product_product (product_tmpl_id);
CREATE INDEX stock_quant__product_id_index ON stock_quant (product_id, location_id);
CREATE INDEX sale_order__date_order_index ON sale_order (date_order);
CREATE INDEX sale_order__partner_id_index ON sale_order (partner_id);
CREATE INDEX sale_order_line__order_id_index ON sale_order_line (order_id);
CREATE INDEX stock_move__product_id_index ON stock_move (product_id);
CREATE INDEX stock_move__sale_line_id_index ON stock_move (sale_line_id);
CREATE INDEX stock_move__picking_id_index ON stock_move (picking_id);
CREATE INDEX purchase_order_line__order_id_index ON purchase_order_line (order_id);
CREATE INDEX account_move__date_index ON account_move (date);
CREATE INDEX account_move__state_index ON account_move (state);
CREATE INDEX account_move_line__move_id_index ON account_move_line (move_id);
CREATE INDEX account_move_line__account_id_index ON account_move_line (account_id);
CREATE INDEX ir_attachment__res_idx ON ir_attachment (res_model, res_id);
CREATE INDEX ir_attachment__checksum_index ON ir_attachment (checksum);
CREATE INDEX ir_attachment__store_fname_index ON ir_attachment (store_fname);
CREATE INDEX ir_model_data__model_res_id_index ON ir_model_data (model, res_id);
