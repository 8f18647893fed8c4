"""Records erpops keeps in the state store about an environment, read by the CLI and the actions.

- **Release history** (kind ``release``, keyed by release id = the deploying run's id): images per
  service, images before, time, run id, pre-deploy backup id, status (``pending``, ``good``,
  ``failed``) and, for rollbacks, the release returned to and the backup restored. Written by the
  ``runtime.record_release`` action; read by ``runtime.releases``, ``runtime.resolve_release``,
  ``erpops releases list`` and the retention policy (which keeps the newest releases' pre-deploy
  backups).
- **Failover topology** (kind ``topology``, key ``current``): which of the two configured
  database servers is the primary now. Written by ``failover.record_topology``; applied by the CLI
  to every environment it loads for a run (:func:`apply_topology`), and by the failover actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erpops.environments import Environment

RELEASE = "release"
TOPOLOGY = "topology"
CURRENT = "current"


# --- release history --------------------------------------------------------------------------


def release_time(release: dict[str, Any]) -> str:
    """When a release was made (its ``time``; older records only have ``recorded_at``)."""
    return str(release.get("time") or release["recorded_at"])


def list_releases(state: Any, environment: str) -> list[dict[str, Any]]:
    """The release history of ``environment``, newest first (also used by ``erpops releases list``)."""
    records = state.list_records(RELEASE, environment)
    out = [{**r.data, "id": r.key, "recorded_at": r.created_at.isoformat()} for r in records]
    return sorted(out, key=release_time, reverse=True)


# --- failover topology ------------------------------------------------------------------------


def apply_topology(env: Environment, state: Any) -> Environment:
    """The environment with the database endpoints its last failover recorded.

    The record (kind ``topology``, key ``current``) names which of the two configured servers is
    the primary now. It is applied only while erpops.yaml still names the same two servers
    (``database.dsn`` and ``standby.dsn``, in either order): once the file is edited, the file
    wins. The application database name and every other setting stay as configured; the server
    endpoints (``dsn`` and ``fence_command``) swap. The CLI applies it when it loads an environment
    for a run, so every runbook after a failover works against the new primary.
    """
    if state is None or env.database is None or env.standby is None:
        return env
    rec = state.get_record(TOPOLOGY, env.name, CURRENT)
    if rec is None:
        return env
    want_primary, want_standby = rec.data.get("primary_dsn"), rec.data.get("standby_dsn")
    configured = {env.database.dsn, env.standby.dsn}
    if want_primary == want_standby or {want_primary, want_standby} != configured:
        return env
    if env.database.dsn == want_primary:
        return env
    old, new = env.database, env.standby
    return env.model_copy(
        update={
            "database": old.model_copy(update={"dsn": new.dsn, "fence_command": new.fence_command}),
            "standby": new.model_copy(update={"dsn": old.dsn, "fence_command": old.fence_command, "name": old.name}),
        }
    )


def forget_topology(state: Any, environment: str) -> None:
    """Drop the recorded topology (e.g. after the servers were re-created from scratch)."""
    state.delete_record(TOPOLOGY, environment, CURRENT)
