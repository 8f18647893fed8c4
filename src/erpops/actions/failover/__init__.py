"""Failover actions: replication status, fence, promote, wait until writable, repoint, write probe,
topology record, report. Importing this package registers every action of the family:

- :mod:`.replication`: ``postgres.replication_status``, ``postgres.promote``, ``postgres.wait_writable``
- :mod:`.fence`: ``postgres.fence``, ``postgres.unfence``
- :mod:`.app`: ``failover.repoint``, ``failover.record_topology``, ``failover.probe_start``,
  ``failover.probe_stop``
- :mod:`.report`: ``failover.report``
- :mod:`._common`: what they share (servers by role in the current topology, the write probes)

The write probe (``failover.probe_start`` / ``failover.probe_stop``) runs in a background thread
of the erpops process between its two steps (a registry keyed by run id); ``failover.repoint``
points it at the new primary together with the application. The topology record itself is read
and applied by :mod:`erpops.records`. Backends are imported inside ``apply`` only.
"""

from erpops.actions.failover import app, fence, replication, report

__all__ = ["app", "fence", "replication", "report"]
