"""erpops: operate Odoo-based distribution ERP platforms with versioned runbooks."""

__version__ = "0.1.0"
