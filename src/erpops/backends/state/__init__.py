"""The state stores behind ``erpops.state.StateStore``: runs, steps, locks, approvals, audit.

- :mod:`.sql`: what both stores share (one schema, one set of queries);
- :mod:`.sqlite`: the default, one SQLite file in the XDG state directory;
- :mod:`.postgres`: the team store on PostgreSQL, with the audit trail in a table.
"""
