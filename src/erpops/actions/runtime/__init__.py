"""Runtime actions: the application's services on the environment's runtime (Docker or Kubernetes,
:mod:`erpops.backends.runtime`). Importing this package registers every action of the family:

- :mod:`.rollout`: ``runtime.check``, ``runtime.current``, ``runtime.deploy``, ``runtime.health``,
  ``runtime.scale``, ``runtime.run_once``, ``runtime.restart``, ``runtime.set_env``, ``runtime.stop``
- :mod:`.releases`: ``runtime.record_release``, ``runtime.releases``, ``runtime.resolve_release``
  (the release history, :mod:`erpops.records`)
- :mod:`._common`: ``runtime_of`` (the runtime shared by the steps of a run)

Backends are imported inside ``apply`` only.
"""

from erpops.actions.runtime import releases, rollout

__all__ = ["releases", "rollout"]
