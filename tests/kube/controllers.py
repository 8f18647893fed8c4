"""The controllers of the test API server, as a cluster runs them (one loop, every 50 ms).

- **Deployments** (kube-controller-manager's rules): the ReplicaSet whose pod template equals the
  Deployment's is the new one (created with ``pod-template-hash`` in its name, labels and
  selector, the next ``deployment.kubernetes.io/revision``; an old one whose template comes back
  — a rollback — gets the next revision); RollingUpdate scales it up within ``maxSurge`` and the
  old ones down keeping ``replicas - maxUnavailable`` available (unhealthy old pods first);
  Recreate scales the old ones to 0 first; status: observedGeneration, replicas, updated,
  ready, available, unavailable, the Available and Progressing conditions (ReplicaSetUpdated,
  NewReplicaSetAvailable, ProgressDeadlineExceeded once no progress for
  ``progressDeadlineSeconds``); old ReplicaSets beyond ``revisionHistoryLimit`` are deleted.
- **ReplicaSets** create and delete pods to match ``replicas`` (not-ready ones deleted first).
- **Pods** (the kubelet): the image decides — ``*never-ready*`` runs but never gets ready,
  ``*slow*`` gets ready after 2 s, ``*no-pull*`` waits in ``ImagePullBackOff``, anything else is
  ready after 0.1 s; a pod of a Job ends after 0.2 s with exit code 0, or N for an image tag
  ``exit-N`` (``*fail*``: 1).
- **Jobs** run one pod at a time, retried up to ``backoffLimit``; Complete or Failed
  (BackoffLimitExceeded, DeadlineExceeded after ``activeDeadlineSeconds``).
- **Service proxy**: ``/.../services/NAME/proxy/PATH`` answers 200 when a ready pod selected by
  the service runs a healthy image, 500 for an image ``*sick*``, 503 without a ready pod.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
import uuid
from typing import Any

from tests.kube.resources import RESOURCES, resolve_int_or_percent

REVISION = "deployment.kubernetes.io/revision"
MANAGER = "kube-controller-manager"
KIND = {r.kind: r for r in RESOURCES}


def now() -> str:
    from tests.kube.server import now as _now

    return _now()


def template_hash(template: dict[str, Any]) -> str:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    digest = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    n = int(digest[:16], 16)
    out = ""
    while len(out) < 10:
        n, r = divmod(n, len(alphabet))
        out += alphabet[r]
    return out


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop("pod-template-hash", None)
    return t


def behaviour(image: str, rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a container of ``image`` does (the rule on its name, or the server's ``image_rules``)."""
    found = _by_name(image)
    found.update((rules or {}).get(image, {}))
    return found


def _by_name(image: str) -> dict[str, Any]:
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    exit_code = 0
    m = re.search(r"exit-(\d+)", tag)
    if m:
        exit_code = int(m.group(1))
    elif "fail" in image:
        exit_code = 1
    return {
        "ready_after": None if "never-ready" in image else (2.0 if "slow" in image else 0.1),
        "pull_error": "no-pull" in image,
        "exit_code": exit_code,
        "sick": "sick" in image,
    }


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences", []))


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(
    kind: str, status: str, reason: str, message: str, stamp: str, with_update: bool = True
) -> dict[str, Any]:
    c = {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": stamp}
    if with_update:
        c["lastUpdateTime"] = stamp
    return c


class Controllers:
    def __init__(self, store: Any, image_rules: dict[str, Any]) -> None:
        self.store = store
        self.rules = image_rules
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started: dict[str, float] = {}  # pod uid -> when it started (monotonic)
        self.ready_since: dict[str, float] = {}
        self.progress: dict[str, tuple[Any, float]] = {}  # deployment uid -> (last counts, when)
        self.logs: dict[str, str] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kube-controllers")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.tick()
            except Exception as exc:  # a controller bug shows up as a test failure, not a dead loop
                self.store.errors.append(f"controller: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def tick(self) -> None:
        with self.store.lock:
            for d in self.store.find(KIND["Deployment"]):
                self.deployment(d)
            for rs in self.store.find(KIND["ReplicaSet"]):
                self.replicaset(rs)
            for job in self.store.find(KIND["Job"]):
                self.job(job)
            for pod in self.store.find(KIND["Pod"]):
                self.kubelet(pod)

    # --- helpers -----------------------------------------------------------------------------
    def _status(self, res_kind: str, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if obj.get("status") == status:
            return obj
        new = copy.deepcopy(obj)
        new["status"] = status
        res = KIND[res_kind]
        return self.store.replace(res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], new,
                                  subresource="status", manager=MANAGER, check_rv=False)  # fmt: skip

    def _update(self, res_kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        res = KIND[res_kind]
        return self.store.replace(res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], obj,
                                  manager=MANAGER, check_rv=False)  # fmt: skip

    def _pods_of(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        ns = owner["metadata"]["namespace"]
        return [p for p in self.store.find(KIND["Pod"], ns) if _owned_by(p, owner)]

    def _ready(self, pod: dict[str, Any]) -> bool:
        for c in (pod.get("status") or {}).get("conditions", []):
            if c["type"] == "Ready":
                return bool(c["status"] == "True")
        return False

    def _available(self, pod: dict[str, Any], min_ready: float) -> bool:
        since = self.ready_since.get(pod["metadata"]["uid"])
        return self._ready(pod) and since is not None and time.monotonic() - since >= min_ready

    # --- deployments ---------------------------------------------------------------------------
    def deployment(self, d: dict[str, Any]) -> None:
        spec, meta = d["spec"], d["metadata"]
        ns = meta["namespace"]
        rss = [rs for rs in self.store.find(KIND["ReplicaSet"], ns) if _owned_by(rs, d)]
        template = spec["template"]
        new = next((rs for rs in rss if _without_hash(rs["spec"]["template"]) == _without_hash(template)), None)
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in rss]
        top = max(revisions, default=0)
        desired = int(spec.get("replicas", 1))
        created = False
        if new is None:
            h = template_hash(template)
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            rs = {
                "metadata": {
                    "name": f"{meta['name']}-{h}",
                    "namespace": ns,
                    "labels": dict(tmpl["metadata"]["labels"]),
                    "annotations": {REVISION: str(top + 1), "deployment.kubernetes.io/desired-replicas": str(desired)},
                    "ownerReferences": [_owner_ref(d)],
                },
                "spec": {
                    "replicas": 0,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                    "selector": selector,
                    "template": tmpl,
                },
            }
            new = self.store.create(KIND["ReplicaSet"], ns, rs, MANAGER)
            rss.append(new)
            created = True
        elif int(new["metadata"].get("annotations", {}).get(REVISION, "0")) < top:
            new["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)  # a template that came back
            new = self._update("ReplicaSet", new)
            rss = [new if r["metadata"]["uid"] == new["metadata"]["uid"] else r for r in rss]
        revision = new["metadata"]["annotations"][REVISION]
        if meta.get("annotations", {}).get(REVISION) != revision:
            d = copy.deepcopy(d)
            d["metadata"].setdefault("annotations", {})[REVISION] = revision
            d = self._update("Deployment", d)
            spec, meta = d["spec"], d["metadata"]
        olds = [rs for rs in rss if rs["metadata"]["uid"] != new["metadata"]["uid"]]
        if not spec.get("paused"):
            self._rollout(d, new, olds, desired)
        self._cleanup(d, olds)
        self._deployment_status(d, new, created)

    def _rollout(self, d: dict[str, Any], new: dict[str, Any], olds: list[dict[str, Any]], desired: int) -> None:
        strategy = d["spec"].get("strategy") or {}

        def scale(rs: dict[str, Any], n: int) -> None:
            if rs["spec"]["replicas"] != n:
                rs["spec"]["replicas"] = n
                rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(desired)
                self._update("ReplicaSet", rs)

        if strategy.get("type") == "Recreate":
            for rs in olds:
                scale(rs, 0)
            if any(self._pods_of(rs) for rs in olds):
                return
            scale(new, desired)
            return
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), desired, True)
        unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        total = new["spec"]["replicas"] + sum(rs["spec"]["replicas"] for rs in olds)
        if new["spec"]["replicas"] > desired:
            scale(new, desired)
        elif new["spec"]["replicas"] < desired:
            room = desired + surge - total
            if room > 0:
                scale(new, min(desired, new["spec"]["replicas"] + room))
        total = new["spec"]["replicas"] + sum(rs["spec"]["replicas"] for rs in olds)
        min_available = desired - unavailable
        new_unavailable = new["spec"]["replicas"] - int((new.get("status") or {}).get("availableReplicas", 0))
        budget = total - min_available - new_unavailable
        if budget <= 0:
            return
        for rs in sorted(olds, key=lambda r: r["metadata"]["creationTimestamp"]):  # unhealthy old pods first
            sick = rs["spec"]["replicas"] - int((rs.get("status") or {}).get("availableReplicas", 0))
            down = min(budget, max(sick, 0))
            if down:
                scale(rs, rs["spec"]["replicas"] - down)
                budget -= down
        available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in [new, *olds])
        down_total = min(budget, available - min_available)
        for rs in sorted(olds, key=lambda r: r["metadata"]["creationTimestamp"]):
            if down_total <= 0:
                break
            down = min(rs["spec"]["replicas"], down_total)
            if down:
                scale(rs, rs["spec"]["replicas"] - down)
                down_total -= down

    def _cleanup(self, d: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in olds if rs["spec"]["replicas"] == 0 and not self._pods_of(rs)]
        idle.sort(key=lambda r: int(r["metadata"].get("annotations", {}).get(REVISION, "0")))
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.store.delete(KIND["ReplicaSet"], rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _deployment_status(self, d: dict[str, Any], new: dict[str, Any], created: bool) -> None:
        ns = d["metadata"]["namespace"]
        rss = [rs for rs in self.store.find(KIND["ReplicaSet"], ns) if _owned_by(rs, d)]
        new = next((rs for rs in rss if rs["metadata"]["uid"] == new["metadata"]["uid"]), new)
        desired = int(d["spec"].get("replicas", 1))
        st = lambda rs, k: int((rs.get("status") or {}).get(k, 0))  # noqa: E731
        replicas = sum(st(rs, "replicas") for rs in rss)
        updated = st(new, "replicas")
        ready = sum(st(rs, "readyReplicas") for rs in rss)
        available = sum(st(rs, "availableReplicas") for rs in rss)
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), desired, False) if ru else 0
        old_status = d.get("status") or {}
        old_conditions = {c["type"]: c for c in old_status.get("conditions", [])}
        stamp = now()
        conditions = []
        if available >= desired - max_unavailable:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        prev = old_conditions.get("Available")
        if prev and (prev["status"], prev["reason"]) == avail[:2]:
            conditions.append(prev)
        else:
            conditions.append(_condition("Available", *avail, stamp))
        name = new["metadata"]["name"]
        uid = d["metadata"]["uid"]
        counts = (updated, available, ready, replicas, d["metadata"]["generation"])
        last_counts, last_time = self.progress.get(uid, (None, time.monotonic()))
        if counts != last_counts or created:
            last_time = time.monotonic()
        self.progress[uid] = (counts, last_time)
        complete = updated == desired and replicas == desired and available == desired
        prev = old_conditions.get("Progressing")
        deadline = d["spec"].get("progressDeadlineSeconds")
        if complete:
            prog = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
        elif prev and prev["reason"] == "ProgressDeadlineExceeded" and counts == last_counts and not created:
            prog = (prev["status"], prev["reason"], prev["message"])
        elif deadline is not None and time.monotonic() - last_time > float(deadline):
            prog = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
        elif created:
            prog = ("True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
        else:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        if prev and (prev["status"], prev["reason"], prev["message"]) == prog and counts == last_counts:
            conditions.append(prev)
        else:
            c = _condition("Progressing", *prog, stamp)
            if prev and prev["status"] == prog[0]:
                c["lastTransitionTime"] = prev["lastTransitionTime"]
            conditions.append(c)
        status: dict[str, Any] = {"observedGeneration": d["metadata"]["generation"], "replicas": replicas,
                                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                                  "conditions": conditions}  # fmt: skip
        unavailable = max(replicas - available, desired - available, 0)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if status[key] == 0:
                del status[key]
        current = self.store.get(KIND["Deployment"], ns, d["metadata"]["name"])
        self._status("Deployment", current, status)

    # --- replica sets and pods ------------------------------------------------------------------
    def replicaset(self, rs: dict[str, Any]) -> None:
        pods = self._pods_of(rs)
        want = int(rs["spec"].get("replicas", 1))
        ns = rs["metadata"]["namespace"]
        for _ in range(want - len(pods)):
            tmpl = copy.deepcopy(rs["spec"]["template"])
            pod = {
                "metadata": {
                    "name": f"{rs['metadata']['name']}-{uuid.uuid4().hex[:5]}",
                    "namespace": ns,
                    "labels": tmpl.get("metadata", {}).get("labels", {}),
                    "annotations": tmpl.get("metadata", {}).get("annotations", {}),
                    "ownerReferences": [_owner_ref(rs)],
                },
                "spec": tmpl["spec"],
            }
            self.store.create(KIND["Pod"], ns, pod, MANAGER)
        if len(pods) > want:
            order = sorted(pods, key=lambda p: (self._ready(p), p["metadata"]["creationTimestamp"]))
            for pod in order[: len(pods) - want]:
                self.store.delete(KIND["Pod"], ns, pod["metadata"]["name"])
        pods = self._pods_of(rs)
        min_ready = float(rs["spec"].get("minReadySeconds", 0))
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": sum(1 for p in pods if self._ready(p)),
            "availableReplicas": sum(1 for p in pods if self._available(p, min_ready)),
            "observedGeneration": rs["metadata"]["generation"],
        }
        for key in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
            if status[key] == 0:
                del status[key]
        self._status("ReplicaSet", rs, status)

    def kubelet(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        t0 = self.started.setdefault(uid, time.monotonic())
        age = time.monotonic() - t0
        containers = pod["spec"]["containers"]
        b = behaviour(containers[0].get("image", ""), self.rules)
        job = any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences", []))
        stamp = pod["metadata"]["creationTimestamp"]
        old = pod.get("status") or {}
        if old.get("phase") in ("Succeeded", "Failed"):
            return
        statuses = []
        phase, ready = "Running", False
        for c in containers:
            cs: dict[str, Any] = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "restartCount": 0,
                                  "started": True, "ready": False}  # fmt: skip
            if b["pull_error"]:
                phase = "Pending"
                cs.update(started=False, state={"waiting": {"reason": "ImagePullBackOff",
                          "message": f'Back-off pulling image "{c.get("image")}"'}})  # fmt: skip
            elif job and age >= 0.2:
                code = b["exit_code"]
                phase = "Succeeded" if code == 0 else "Failed"
                cs.update(started=False, state={"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                          else "Error", "startedAt": stamp, "finishedAt": now()}})  # fmt: skip
                command = " ".join([*(c.get("command") or []), *(c.get("args") or [])])
                said = b.get("log") or ("done" if code == 0 else f"error: the command failed with exit code {code}")
                self.logs[uid] = f"{c.get('image')}: {command}\n{said}\n"
            else:
                cs.update(containerID=f"containerd://{uid.replace('-', '')}", state={"running": {"startedAt": stamp}})
                is_ready = b["ready_after"] is not None and age >= b["ready_after"] and not job
                cs["ready"] = is_ready
                ready = is_ready
            statuses.append(cs)
        if ready:
            self.ready_since.setdefault(uid, time.monotonic())
        flag = "True" if ready else "False"
        conditions = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
            {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
        ]
        status = {"phase": phase, "conditions": conditions, "hostIP": "10.0.0.1", "podIP": "10.1.0.2",
                  "startTime": stamp, "containerStatuses": statuses, "qosClass": "BestEffort"}  # fmt: skip
        if _comparable(old) != _comparable(status):
            self._status("Pod", pod, status)

    # --- jobs ------------------------------------------------------------------------------------
    def job(self, job: dict[str, Any]) -> None:
        status = copy.deepcopy(job.get("status") or {})
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", [])):
            return
        ns = job["metadata"]["namespace"]
        pods = self._pods_of(job)
        status.setdefault("startTime", now())
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        active = len(pods) - failed - succeeded
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = self.started.setdefault(job["metadata"]["uid"], time.monotonic())
        stamp = now()
        if succeeded:
            status.update(succeeded=succeeded, completionTime=stamp, conditions=[
                {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp},
                {"type": "Complete", "status": "True", "lastProbeTime": stamp,
                 "lastTransitionTime": stamp}])  # fmt: skip
            status.pop("active", None)
        elif failed > int(job["spec"].get("backoffLimit", 6)):
            status.update(failed=failed, conditions=[
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastProbeTime": stamp,
                 "lastTransitionTime": stamp},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastProbeTime": stamp,
                 "lastTransitionTime": stamp}])  # fmt: skip
            status.pop("active", None)
        elif deadline is not None and time.monotonic() - started > float(deadline):
            for p in pods:
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    self.store.delete(KIND["Pod"], ns, p["metadata"]["name"])
            status.update(failed=failed + active, conditions=[
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline", "lastProbeTime": stamp,
                 "lastTransitionTime": stamp}])  # fmt: skip
            status.pop("active", None)
        else:
            if active == 0:
                tmpl = copy.deepcopy(job["spec"]["template"])
                labels = {**(tmpl.get("metadata") or {}).get("labels", {}), "job-name": job["metadata"]["name"],
                          "batch.kubernetes.io/job-name": job["metadata"]["name"],
                          "controller-uid": job["metadata"]["uid"]}  # fmt: skip
                notes = (tmpl.get("metadata") or {}).get("annotations", {})
                pod = {"metadata": {"name": f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}", "namespace": ns,
                                    "labels": labels, "annotations": notes, "ownerReferences": [_owner_ref(job)]},
                       "spec": tmpl["spec"]}  # fmt: skip
                self.store.create(KIND["Pod"], ns, pod, MANAGER)
                active = 1
            status["active"] = active
            if failed:
                status["failed"] = failed
        status.setdefault("ready", 0)
        status.setdefault("terminating", 0)
        if status != job.get("status"):
            self._status("Job", job, status)

    # --- pod log and service proxy ------------------------------------------------------------------
    def pod_log(self, pod: dict[str, Any]) -> str:
        return self.logs.get(pod["metadata"]["uid"], f"{pod['spec']['containers'][0].get('image')}: running\n")

    def proxy(self, svc: dict[str, Any], path: str) -> tuple[int, str]:
        from tests.kube.server import _labels_match

        selector = ",".join(f"{k}={v}" for k, v in (svc["spec"].get("selector") or {}).items())
        pods = [p for p in self.store.find(KIND["Pod"], svc["metadata"]["namespace"])
                if selector and _labels_match(p["metadata"].get("labels") or {}, selector)
                and self._ready(p)]  # fmt: skip
        if not pods:
            return 503, f'no endpoints available for service "{svc["metadata"]["name"]}"'
        container = pods[0]["spec"]["containers"][0]
        image = container.get("image", "")
        b = behaviour(image, self.rules)
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        tag = image.rsplit(":", 1)[-1] if ":" in image else "latest"
        numbered = re.search(r"\bv\d+\b", tag)  # odoo:v2, odoo:healthy-v2, odoo:v2-slow
        version = numbered.group(0) if numbered else tag.split("-")[0]
        body = {"status": "fail" if b["sick"] else "pass", "version": version, "marker": env.get("MARKER"),
                "path": path}  # fmt: skip
        return (500 if b["sick"] else 200), json.dumps(body)


def _comparable(status: dict[str, Any]) -> Any:
    s = copy.deepcopy(status)
    for cs in s.get("containerStatuses", []):
        term = (cs.get("state") or {}).get("terminated")
        if term:
            term.pop("finishedAt", None)
    return s
