"""Odoo actions: back up, restore, neutralize and check an Odoo database and its filestore.

The family is split by purpose; importing this package registers every action:

- :mod:`.backup`: ``odoo.preflight``, ``odoo.backup``
- :mod:`.drill`: ``odoo.select_backup``, ``odoo.restore``, ``odoo.neutralize``, ``odoo.verify``,
  ``odoo.cleanup``
- :mod:`.pitr`: ``odoo.restore_physical``, ``odoo.cleanup_physical`` (drills to a moment)
- :mod:`.report`: ``odoo.drill_report``
- :mod:`.dbzip`: ``odoo.export_zip``, ``odoo.import_zip`` (Odoo's database-manager zip)
- :mod:`.swap`: ``odoo.swap_database`` (a restored copy in the live database's place)

Backends (PostgreSQL, object storage, zstd) are imported inside ``apply`` only.
"""

from erpops.actions.odoo import backup, dbzip, drill, pitr, report, swap

__all__ = ["backup", "dbzip", "drill", "pitr", "report", "swap"]
