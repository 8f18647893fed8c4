"""``erpops provision`` on one Docker host: what the environment needs there, converged.

Objects, in the order a run creates them (a dry run reads the same and changes nothing):

- **files** on the host: odoo.conf (``odoo.conf_file``, default ``<runtime.config_dir>/odoo/odoo.conf``;
  0600 when it holds a secret; rendered from ``templates/odoo/odoo.conf.j2`` when the environment
  has a database), and with an ``ingress:`` Traefik's static configuration and certificate copies
  (``templates/traefik/traefik.yml.j2``). A hand edit is reported as a diff (secrets masked) and
  written back;
- **network** ``<project>`` and the **named volumes** the services mount (labelled; a volume that
  exists without erpops's label is used as it is);
- **the front** ``<project>-traefik``: created when missing, started when stopped, recreated when
  its image, ports, labels or configuration folder differ; its routes (``dynamic/erpops.yml``) put
  back to the instances running now when edited;
- **each service's instances**: as many running as ``replicas`` (the image they run now, else
  the service's or ``odoo.image``), replaced (rolling, through the front) when their labels
  differ from the service's ``labels``;
- **prune**: containers erpops labelled for this environment that nothing renders any more (a
  service removed from erpops.yaml, the front of a removed ``ingress:``, finished one-off runs)
  are removed. Volumes are never removed (they hold the filestore): a volume no service mounts is
  reported, kept.
"""

from __future__ import annotations

import difflib
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import docker.errors
from docker.models.containers import Container

from erpops import rendering, secrets
from erpops.backends.ingress.traefik import DYNAMIC_FILE
from erpops.backends.runtime.docker.front import config_dir, files_dir
from erpops.backends.runtime.docker.runtime import (
    LABEL_ENV,
    LABEL_ROLE,
    LABEL_SERVICE,
    DockerRuntime,
    _mounts,
)
from erpops.files import write_atomic
from erpops.provisioning import ObjectChange, db_endpoint

#: Labels erpops sets itself on a service's containers (the rest must equal the service's ``labels``).
_OWN = ("erpops.",)


def conf_file(rt: DockerRuntime) -> Path:
    if rt.env.odoo.conf_file:
        return Path(rt.env.odoo.conf_file).expanduser()
    return files_dir(rt.env, rt.project) / "odoo" / "odoo.conf"


def _diff(path: Path, old: str, new: str) -> str:
    lines = difflib.unified_diff(
        secrets.redact(old).splitlines(keepends=True),
        secrets.redact(new).splitlines(keepends=True),
        f"{path} (now)",
        f"{path} (rendered)",
        n=1,
    )
    return "".join(lines).rstrip("\n")


def _file(path: Path, data: bytes, mode: int, apply: bool, *, show: bool = True) -> ObjectChange:
    """One rendered file: written when missing or different (a diff when ``show``), mode put back."""
    if not path.exists():
        if apply:
            write_atomic(path, data, mode)
        return ObjectChange("file", str(path), "create", f"mode {mode:04o}")
    current = path.read_bytes()
    have_mode = stat.S_IMODE(path.stat().st_mode)
    if current != data:
        if apply:
            write_atomic(path, data, mode)
        detail = _diff(path, current.decode(errors="replace"), data.decode(errors="replace")) if show else "differs"
        return ObjectChange("file", str(path), "update", detail or "differs")
    if have_mode != mode:
        if apply:
            os.chmod(path, mode)
        return ObjectChange("file", str(path), "update", f"mode {have_mode:04o} -> {mode:04o}")
    return ObjectChange("file", str(path), "no change")


def _odoo_conf(rt: DockerRuntime, resolve: Callable[[str], str], apply: bool) -> list[ObjectChange]:
    if rt.env.database is None:
        return []
    done = rendering.render("odoo/odoo.conf", {"env": rt.env.as_template(), "db": db_endpoint(rt.env, resolve)})
    return [_file(conf_file(rt), done.text.encode(), 0o600 if done.secret else 0o644, apply)]


def _network(rt: DockerRuntime, apply: bool) -> ObjectChange:
    if rt.client.networks.list(names=[rt.project]):
        return ObjectChange("network", rt.project, "no change")
    if apply:
        rt._network()
    return ObjectChange("network", rt.project, "create", "bridge")


def _named_volumes(rt: DockerRuntime) -> dict[str, list[str]]:
    """Named volumes (not host paths) the services mount -> the services mounting them."""
    found: dict[str, list[str]] = {}
    for name, spec in rt.specs.items():
        for source in _mounts(spec):
            if not source.startswith(("/", "~", ".")):
                found.setdefault(source, []).append(name)
    return found


def _volumes(rt: DockerRuntime, apply: bool) -> list[ObjectChange]:
    changes = []
    wanted = _named_volumes(rt)
    for name, users in sorted(wanted.items()):
        try:
            rt.client.volumes.get(name)
            changes.append(ObjectChange("volume", name, "no change", f"mounted by {', '.join(users)}"))
        except docker.errors.NotFound:
            if apply:
                rt.client.volumes.create(name, labels={LABEL_ENV: rt.env.name})
            changes.append(ObjectChange("volume", name, "create", f"mounted by {', '.join(users)}"))
    for v in rt.client.volumes.list(filters={"label": f"{LABEL_ENV}={rt.env.name}"}):
        if v.name not in wanted:
            changes.append(ObjectChange("volume", str(v.name), "no change", "no service mounts it: kept (data)"))
    return changes


def _front_drift(rt: DockerRuntime, front: Container, folder: Path) -> list[str]:
    """How the running front differs from ``templates/docker/front.yml.j2`` as rendered now."""
    ingress = rt.env.ingress
    assert ingress is not None
    spec = rt.front_container_spec(folder)
    config = front.attrs.get("Config", {})
    host = front.attrs.get("HostConfig", {})
    differs = []
    if config.get("Image") != spec.image:
        differs.append(f"image {config.get('Image')} -> {spec.image}")
    if (config.get("Cmd") or []) != spec.command:
        differs.append(f"command {config.get('Cmd')} -> {spec.command}")
    want_labels = {**spec.labels, **rt._front_labels(ingress.service)}
    have_labels = dict(front.labels or {})
    if have_labels != want_labels:
        keys = sorted(k for k in set(have_labels) | set(want_labels) if have_labels.get(k) != want_labels.get(k))
        differs.append("labels " + ", ".join(f"{k}: {have_labels.get(k)} -> {want_labels.get(k)}" for k in keys))
    firsts = {k: (v or [{}])[0] for k, v in (host.get("PortBindings") or {}).items()}
    have_ports = {k: (b.get("HostIp", ""), b.get("HostPort", "")) for k, b in firsts.items()}
    want_ports = {k: (bind, str(port)) for k, (bind, port) in spec.ports.items()}
    if have_ports != want_ports:
        differs.append(f"ports {have_ports} -> {want_ports}")
    mounts = {
        m.get("Source"): (m.get("Destination"), "rw" if m.get("RW") else "ro") for m in front.attrs.get("Mounts") or []
    }
    want_mounts = {src: (v.get("bind"), v.get("mode", "rw")) for src, v in spec.volumes.items()}
    if mounts != want_mounts:
        differs.append(f"volumes {mounts} -> {want_mounts}")
    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if restart != spec.restart:
        differs.append(f"restart {restart} -> {spec.restart}")
    return differs


def _front(rt: DockerRuntime, apply: bool) -> list[ObjectChange]:
    if rt.env.ingress is None:
        return []
    folder = config_dir(rt.env, rt.project)
    changes = [_file(p, data, mode, apply, show=p.suffix != ".key") for p, (data, mode) in
               rt.front_static_files(folder).items()]  # fmt: skip
    restart = any(c.changed for c in changes)
    name = f"{rt.project}-traefik"
    try:
        front: Container | None = rt.client.containers.get(name)
    except docker.errors.NotFound:
        front = None
    if front is None:
        changes.append(ObjectChange("container", name, "create", f"Traefik {rt.env.ingress.image}"))
    else:
        drift = _front_drift(rt, front, folder)
        if drift:
            changes.append(ObjectChange("container", name, "update", "recreate: " + "; ".join(drift)))
            if apply:
                front.remove(force=True)
        elif front.status != "running":
            changes.append(ObjectChange("container", name, "update", f"start (it is {front.status})"))
        elif restart:
            changes.append(ObjectChange("container", name, "update", "restart (static configuration changed)"))
        else:
            changes.append(ObjectChange("container", name, "no change", "running"))
    if apply:
        (folder / "dynamic").mkdir(parents=True, exist_ok=True)
        (folder / "state").mkdir(mode=0o700, exist_ok=True)
        rt._front_container(folder, restart)
    return changes


def _routes(rt: DockerRuntime, apply: bool, *, confirm: bool) -> list[ObjectChange]:
    """The front's routes against the instances running now (after the services converged);
    ``confirm``: the front was (re)started, so wait for it to serve them even when unchanged."""
    if rt.env.ingress is None:
        return []
    service = rt.env.ingress.service
    spec = rt.spec(service)
    running = rt._running(service)
    text, _ = rt.front_dynamic(rt.front_servers(spec, running))
    path = config_dir(rt.env, rt.project) / "dynamic" / DYNAMIC_FILE
    current = path.read_text() if path.exists() else None
    if apply and (current != text or confirm):
        rt._front_set(service, spec, running)
    if current == text:
        return [ObjectChange("file", str(path), "no change", f"{len(running)} instance(s) of {service} in rotation")]
    if current is None:
        return [ObjectChange("file", str(path), "create", f"{len(running)} instance(s) of {service} in rotation")]
    return [ObjectChange("file", str(path), "update", _diff(path, current, text))]


def _label_drift(rt: DockerRuntime, service: str, containers: list[Container]) -> str | None:
    want = dict(rt.spec(service).labels)
    for c in containers:
        have = {k: v for k, v in (c.labels or {}).items() if not k.startswith(_OWN)}
        if have != want:
            changed = sorted(set(have.items()) ^ set(want.items()))
            keys = sorted({k for k, _ in changed})
            return f"labels differ on {c.name}: " + ", ".join(f"{k}: {have.get(k)} -> {want.get(k)}" for k in keys)
    return None


def _services(rt: DockerRuntime, apply: bool, timeout: float) -> list[ObjectChange]:
    changes = []
    for service, spec in rt.specs.items():
        name = f"{rt.project}-{service}"
        every = rt._containers(service=service)
        running = [c for c in every if c.status == "running"]
        acted = False
        if len(running) != spec.replicas:
            image = (running[-1].labels.get("erpops.image") if running else None) or rt.default_image(service)
            what = f"{len(running)} -> {spec.replicas} running ({image})"
            if len(every) > len(running):
                what += f"; {len(every) - len(running)} stopped ones removed"
            changes.append(ObjectChange("service", name, "create" if not every else "update", what))
            acted = True
            if apply:
                rt.scale(service, spec.replicas, timeout=timeout)
                running = rt._running(service)
        drift = _label_drift(rt, service, running)
        if drift:
            changes.append(ObjectChange("service", name, "update", f"replace: {drift}"))
            acted = True
            if apply:
                rt.restart(service, timeout=timeout)
        if not acted:
            changes.append(ObjectChange("service", name, "no change", f"{spec.replicas} running"))
    return changes


def _prune(rt: DockerRuntime, apply: bool) -> list[ObjectChange]:
    changes = []
    env_label = f"{LABEL_ENV}={rt.env.name}"
    for c in rt.client.containers.list(all=True, filters={"label": env_label}):
        role, service = c.labels.get(LABEL_ROLE), c.labels.get(LABEL_SERVICE, "")
        why = None
        if role == "service" and service not in rt.specs:
            why = f"service {service!r} is no longer declared"
        elif role == "front" and rt.env.ingress is None:
            why = "the environment has no ingress any more"
        elif role == "run-once" and c.status != "running":
            why = "a finished one-off run"
        if why:
            if apply:
                c.remove(force=True)
            changes.append(ObjectChange("container", str(c.name), "remove", why))
    return changes


def port_problems(rt: DockerRuntime) -> list[str]:
    """The front's ports (``ingress.http_port``, ``https_port``, ``api_port``) that something else
    holds on this host, each named with its setting; ports the running front itself publishes are
    fine. Checked only for a local engine (a remote one's ports are not this machine's)."""
    ingress = rt.env.ingress
    if ingress is None or rt.public_host != "127.0.0.1":
        return []
    held: set[int] = set()
    try:
        front = rt.client.containers.get(f"{rt.project}-traefik")
        if front.status == "running":
            for bindings in (front.attrs.get("HostConfig", {}).get("PortBindings") or {}).values():
                held |= {int(b["HostPort"]) for b in bindings or [] if b.get("HostPort")}
    except docker.errors.NotFound:
        pass
    problems = []
    for setting, bind, port in (
        ("ingress.http_port", ingress.bind, ingress.http_port),
        ("ingress.https_port", ingress.bind, ingress.https_port),
        ("ingress.api_port", "127.0.0.1", ingress.api_port),
    ):
        if port in held:
            continue
        with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((bind, port))
            except OSError as exc:
                problems.append(f"{setting} {port} on {bind} is taken ({exc.strerror})")
    return problems


def converge(
    rt: DockerRuntime, *, resolve: Callable[[str], str], apply: bool, prune: bool = True, timeout: float = 300.0
) -> list[ObjectChange]:
    """Every object above, in order; what was (or, without ``apply``, would be) done."""
    changes = _odoo_conf(rt, resolve, apply)
    changes.append(_network(rt, apply))
    changes += _volumes(rt, apply)
    front = _front(rt, apply)
    changes += front
    changes += _services(rt, apply, timeout)
    changes += _routes(rt, apply, confirm=any(c.changed and c.kind == "container" for c in front))
    if prune:
        changes += _prune(rt, apply)
    return changes
