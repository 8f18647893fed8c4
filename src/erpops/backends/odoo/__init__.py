"""An Odoo database and its filestore, as erpops reads, copies and checks them.

- :mod:`.db`: installed modules, version, row counts, freshness;
- :mod:`.backup`: one consistent snapshot plus the filestore into the object store, manifest last;
- :mod:`.restore`: fetch and check every artifact, then restore (database, filestore);
- :mod:`.checks`: neutralization and the checks of a restore drill;
- :mod:`.swap`: a restored copy in the live database's place, and back;
- :mod:`.dbzip`: Odoo's database-manager zip (export, import);
- :mod:`.peak`: connection headroom and scheduled jobs for scale-for-peak;
- :mod:`.seed`: the seeded Odoo-18-shaped database of the sandbox and the tests
  (``seed_schema.sql``, ``seed_data.sql``).
"""
