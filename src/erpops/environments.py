"""The ``erpops.yaml`` model: environments, where their parts are, runbook pins, state store.

Secrets are never written here: a value may be a reference ``env:VAR``, ``file:PATH`` or
``k8s-secret:ns/name#key``, resolved only when a step needs it (``ctx.resolve_secret``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from erpops import yamlfile
from erpops.errors import InvalidInput, Issue, ValidationFailed
from erpops.files import xdg_base

CONFIG_NAME = "erpops.yaml"
SANDBOX = "sandbox"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Runtime(_Model):
    kind: Literal["docker", "kubernetes", "none"] = "none"
    #: Docker: engine URL (default: the environment's DOCKER_HOST or the local socket).
    host: str | None = None
    #: Kubernetes: kubeconfig context and namespace.
    context: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None
    #: Name prefix of containers/Deployments; defaults to ``erpops-<env>``.
    project: str | None = None
    #: Service name -> settings (port, replicas, command, workers...).
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Kubernetes: seconds the environment's lock Lease lives without renewal (a killed run's lock
    #: is taken over after this); used when the state store is not shared.
    lease_seconds: int = Field(30, ge=2, le=3600)
    #: Docker: the host folder of the files provision renders (odoo.conf, Traefik's configuration);
    #: default ``$XDG_STATE_HOME/erpops/docker/<project>``.
    config_dir: str | None = None


#: libpq connection keywords (https://www.postgresql.org/docs/current/libpq-connect.html)
_LIBPQ_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "scram_client_key",
        "scram_server_key",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    }
)
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_CONNINFO_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")


def dsn_problem(value: str) -> str | None:
    """Why ``value`` is not a PostgreSQL DSN (a URL or key=value pairs) or a secret reference
    to one; None when it is. Checked when erpops.yaml is read, before any run is journaled."""
    from erpops import secrets

    if secrets.is_reference(value):
        return None
    scheme = secrets.unknown_scheme(value)
    if scheme is not None:
        return secrets.unknown_scheme_message(scheme)
    value = value.strip()
    if not value:
        return "empty DSN: expected postgresql://user@host:port/dbname or key=value pairs"
    if value.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(value)
        try:
            for host_port in parts.netloc.rpartition("@")[2].split(","):
                port = host_port.rpartition("]")[2].rpartition(":")[2] if ":" in host_port else ""
                if port and not (port.isdigit() and 0 < int(port) < 65536):
                    return f"malformed PostgreSQL DSN: port {port!r} is not a port number"
        except ValueError:
            return "malformed PostgreSQL DSN"
        for key, val in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key not in _LIBPQ_KEYWORDS:
                return f"malformed PostgreSQL DSN: unknown parameter {key!r} in its query"
            if key == "sslmode" and val not in _SSLMODES:
                return f"malformed PostgreSQL DSN: sslmode {val!r} is not one of {', '.join(_SSLMODES)}"
        return None
    if "://" in value:
        return f"not a PostgreSQL DSN: {value.split('://', 1)[0]}://... (expected postgresql://...)"
    pos = 0
    while pos < len(value):
        m = _CONNINFO_PAIR.match(value, pos)
        if m is None or m.end() == pos:
            return f"malformed PostgreSQL DSN: expected key=value at {value[pos:].split()[0]!r}"
        key, raw = m.group(1), m.group(2)
        if key not in _LIBPQ_KEYWORDS:
            return f"malformed PostgreSQL DSN: unknown keyword {key!r}"
        if key == "sslmode" and raw.strip("'") not in _SSLMODES:
            return f"malformed PostgreSQL DSN: sslmode {raw!r} is not one of {', '.join(_SSLMODES)}"
        if key == "port" and raw and not all(p.isdigit() and 0 < int(p) < 65536 for p in raw.strip("'").split(",")):
            return f"malformed PostgreSQL DSN: port {raw!r} is not a port number"
        pos = m.end()
        while pos < len(value) and value[pos].isspace():
            pos += 1
    return None


def _secret_value(value: str | None) -> str | None:
    """A field that may hold a secret reference: a reference erpops cannot resolve is refused."""
    from erpops import secrets

    scheme = secrets.unknown_scheme(value) if value else None
    if scheme is not None:
        raise ValueError(secrets.unknown_scheme_message(scheme))
    return value


class Database(_Model):
    dsn: str
    name: str = "odoo"
    #: Command run to fence this server at infrastructure level (also when SQL fencing held).
    fence_command: list[str] | None = None
    #: Roles the application logs in as: a failover's fence takes their LOGIN right on the old
    #: primary (with the role that owns the database ``name``), and gives it back on the new one.
    app_roles: list[str] = Field(default_factory=list)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        problem = dsn_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Lifecycle(_Model):
    """The bucket's lifecycle rules ``erpops provision`` keeps (rule id ``erpops``)."""

    #: Incomplete multipart uploads (a killed backup's parts) are aborted after this many days.
    abort_incomplete_multipart_days: int = Field(default=7, ge=1)
    #: Noncurrent object versions (deleted or overwritten backups) expire after this many days;
    #: null keeps them (Object Lock retention applies first either way).
    noncurrent_version_days: int | None = Field(default=90, ge=1)


class Storage(_Model):
    url: str
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    object_lock: Literal["compliance", "governance"] | None = None
    retention_days: int | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)

    @field_validator("access_key", "secret_key")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _secret_value(value)

    @field_validator("url")
    @classmethod
    def _known_store(cls, value: str) -> str:
        """Refused with the file's line when erpops.yaml is read, not after a run started."""
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if not value.strip():
            raise ValueError("storage url is empty: expected s3://bucket/prefix, file:///path or a path")
        if scheme not in ("", "s3", "file"):
            raise ValueError(
                f"storage url {scheme}://... is not supported: use s3://bucket/prefix, file:///path or a path"
            )
        return value


class OdooLimits(_Model):
    """Odoo's worker limits (``limit_*`` in odoo.conf)."""

    memory_soft: int = 2 * 1024**3
    memory_hard: int = int(2.5 * 1024**3)
    time_cpu: int = 600
    time_real: int = 1200
    time_real_cron: int = -1
    request: int = 65536


class Odoo(_Model):
    image: str | None = None
    filestore: str | None = None
    version: str | None = None
    workers: int = 2
    db_maxconn: int = 64
    health_path: str = "/web/health"
    url: str | None = None
    #: Docker: where provision writes odoo.conf on the host (mount it into the services at
    #: ``/etc/odoo/odoo.conf:ro``); default ``<runtime.config_dir>/odoo/odoo.conf``.
    conf_file: str | None = None
    #: Odoo's ``data_dir`` as its instances see it (filestore at ``<data_dir>/filestore/<db>``,
    #: sessions, addons); provision mounts the environment's volume there.
    data_dir: str = "/var/lib/odoo"
    #: The role Odoo logs in as (provision creates it: no superuser, no createrole) and its password
    #: (a secret reference).
    db_user: str = "odoo"
    db_password: str | None = None
    #: How Odoo's instances reach PostgreSQL (default: the host and port of ``database.dsn``).
    db_host: str | None = None
    db_port: int | None = Field(default=None, gt=0, lt=65536)
    #: The database manager's master password (``admin_passwd``; a secret reference).
    admin_passwd: str | None = None
    max_cron_threads: int = Field(default=1, ge=0)
    #: The gevent (websocket / longpolling) port of Odoo's web instances.
    gevent_port: int = Field(default=8072, gt=0, lt=65536)
    proxy_mode: bool = True
    list_db: bool = False
    dbfilter: str | None = None
    limits: OdooLimits = Field(default_factory=OdooLimits)

    @field_validator("db_password", "admin_passwd")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _secret_value(value)


class IngressTLS(_Model):
    """The ingress's certificate: PEM files, or an ACME resolver (Let's Encrypt), not both."""

    cert_file: str | None = None
    key_file: str | None = None
    acme_email: str | None = None
    acme_server: str | None = None  # default: Let's Encrypt's production directory
    acme_challenge: Literal["http", "tls"] = "http"

    @field_validator("acme_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"acme_email {value!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> IngressTLS:
        files = (self.cert_file is not None, self.key_file is not None)
        if files[0] != files[1]:
            raise ValueError("tls needs both cert_file and key_file (PEM), or acme_email")
        if all(files) and self.acme_email:
            raise ValueError("tls: give cert_file/key_file or acme_email, not both")
        if not any(files) and not self.acme_email:
            raise ValueError("tls: give cert_file and key_file (PEM), or acme_email for an ACME certificate")
        return self


class RateLimit(_Model):
    """Requests per second per client address (``average``) and the burst above it."""

    average: int = Field(default=100, ge=1)
    burst: int = Field(default=200, ge=1)


class Ingress(_Model):
    """The environment's front (Traefik): its host name, TLS, headers, rate limit, allow-lists."""

    host: str
    bind: str = "0.0.0.0"
    http_port: int = Field(default=80, gt=0, lt=65536)
    https_port: int = Field(default=443, gt=0, lt=65536)
    #: Traefik's API (erpops's checks), published on 127.0.0.1 only.
    api_port: int = Field(default=8099, gt=0, lt=65536)
    #: None: Traefik's own self-signed certificate (a sandbox, a test).
    tls: IngressTLS | None = None
    rate_limit: RateLimit | None = Field(default_factory=RateLimit)
    #: Strict-Transport-Security max-age (0: no HSTS header).
    hsts_seconds: int = Field(default=31536000, ge=0)
    #: Extra response headers (name -> value; an empty value removes a header).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Client networks (CIDR) allowed at all; empty: everyone.
    allow_from: list[str] = Field(default_factory=list)
    #: Odoo's database manager (/web/database/*, the db RPC service) is refused unless allowed,
    #: and then only from ``database_manager_from`` (CIDR; empty: wherever ``allow_from`` allows).
    allow_database_manager: bool = False
    database_manager_from: list[str] = Field(default_factory=list)
    image: str = "traefik:v3.7"
    #: The service behind the front (its HTTP port; ``/websocket`` to ``odoo.gevent_port``).
    service: str = "web"
    #: Docker: the host folder of Traefik's configuration (default ``<runtime.config_dir>/traefik``).
    config_dir: str | None = None
    #: Seconds instances that left rotation keep serving the requests already sent to them.
    drain_seconds: float = Field(default=1.0, ge=0, le=600)

    @field_validator("host")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                            r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", value):  # fmt: skip
            raise ValueError(f"ingress host {value!r} is not a host name (e.g. erp.example.com)")
        return value.lower()

    @field_validator("allow_from", "database_manager_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network (CIDR such as 10.0.0.0/8 or an address)") from None
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if "\n" in text or "\r" in text:
                raise ValueError(f"header {name}: a value cannot span lines")
        return value


class BackupSettings(_Model):
    """How ``erpops backup`` copies the database, and the WAL archive of a physical method."""

    #: ``logical``: pg_dump of the Odoo database (portable, any server version to restore on);
    #: ``physical``: a base backup of the whole server (pg_basebackup; needs a REPLICATION role),
    #: with WAL archiving what a restore to any moment since needs (``erpops wal``).
    method: Literal["logical", "physical"] = "logical"
    #: ``env check`` / ``wal status`` warn when the newest archived WAL is older than this.
    wal_max_age: str = "15m"

    @field_validator("wal_max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        from erpops.runbook.durations import parse_duration

        try:
            parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"wal_max_age: {exc}") from None
        return value


class Drills(_Model):
    """Scheduled restore drills in the cluster (Kubernetes: a CronJob provision applies)."""

    #: Five-field cron expression, e.g. "0 3 * * *".
    schedule: str
    time_zone: str = "Etc/UTC"
    #: The erpops image the CronJob runs (see the Dockerfile).
    image: str
    #: Secret holding erpops.yaml (key ``erpops.yaml``), mounted at /etc/erpops.
    config_secret: str
    #: Environment variables from Secrets: VAR -> "secret-name#key" (ERPOPS_STATE, storage keys...).
    env_from_secrets: dict[str, str] = Field(default_factory=dict)
    #: A PersistentVolumeClaim for the drill's JUnit and metrics (default: the pod's own disk).
    reports_claim: str | None = None
    #: Also put each drill's report, JUnit and metrics in the environment's object store
    #: (``<env>/drills/<run-id>/``): the evidence outlives the pod without a volume.
    store_reports: bool = False
    timeout_seconds: int = Field(default=7200, ge=60)
    suspend: bool = False

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[\d*/,\-A-Za-z?]+", f) for f in fields):
            raise ValueError(f"schedule {value!r} is not a five-field cron expression (e.g. '0 3 * * *')")
        return value

    @field_validator("env_from_secrets")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        for var, ref in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise ValueError(f"{var!r} is not an environment variable name")
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?#[-._a-zA-Z0-9]+", ref):
                raise ValueError(f"{var}: {ref!r} is not secret-name#key")
        return value


class Check(_Model):
    name: str
    sql: str
    expect: Any = None


class Environment(_Model):
    name: str = ""
    tier: Literal["production", "non-production"] = "non-production"
    runtime: Runtime = Field(default_factory=Runtime)
    database: Database | None = None
    standby: Database | None = None
    storage: Storage | None = None
    odoo: Odoo = Field(default_factory=Odoo)
    #: The front (Traefik) in front of the web service: host, TLS, headers, limits.
    ingress: Ingress | None = None
    #: Scheduled restore drills (Kubernetes: a CronJob that provision applies).
    drills: Drills | None = None
    backup: BackupSettings = Field(default_factory=BackupSettings)
    #: Runbook name -> version specifier (PEP 440 style, e.g. ">=1.2,<2").
    runbooks: dict[str, str] = Field(default_factory=dict)
    #: Extra SQL checks for restore drills.
    checks: list[Check] = Field(default_factory=list)
    #: Free values for templates (``env.vars.x``).
    vars: dict[str, Any] = Field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.tier == "production"

    def as_template(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Config(_Model):
    state: str | None = None
    environments: dict[str, Environment] = Field(default_factory=dict)
    #: Named sets of environments (names or globs), for fleet runs: ``--env tenants``.
    groups: dict[str, list[str]] = Field(default_factory=dict)
    #: Where the config came from (not part of the file).
    source: str | None = Field(default=None, exclude=True)

    @field_validator("environments")
    @classmethod
    def _names(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        for name, env in value.items():
            env.name = name
        return value

    @model_validator(mode="after")
    def _groups(self) -> Config:
        for group, members in self.groups.items():
            if group in self.environments:
                raise ValueError(f"groups: {group!r} is also an environment's name; give the group another name")
            for member in members:
                if not _is_glob(member) and member not in self.environments:
                    raise ValueError(f"groups.{group}: {member!r} is not an environment")
        return self

    def select(self, spec: str | None) -> list[str]:
        """The environments ``--env`` names: a name, a group, a glob over names (``tenant-*``), or
        several of those separated by commas (``--env a --env b`` arrives as ``a,b``). Each part
        must match something; the result keeps the order given, without repeats."""
        if not spec or ("," not in spec and spec not in self.groups and not _is_glob(spec)):
            return [self.environment(spec).name]
        names: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part in self.groups:
                found = [n for member in self.groups[part] for n in self._matching(member)]
            elif _is_glob(part):
                found = self._matching(part)
            else:
                found = [self.environment(part).name]
            if not found:
                known = ", ".join(sorted(self.environments)) or "(none)"
                groups = f"; groups: {', '.join(sorted(self.groups))}" if self.groups else ""
                raise InvalidInput(f"--env {part!r} matches no environment in {self.source or 'the configuration'} "
                                   f"(environments: {known}{groups})")  # fmt: skip
            names += found
        return list(dict.fromkeys(names))

    def _matching(self, pattern: str) -> list[str]:
        import fnmatch

        return [n for n in sorted(self.environments) if fnmatch.fnmatchcase(n, pattern)]

    def environment(self, name: str | None) -> Environment:
        if name and ("," in name or name in self.groups or _is_glob(name)):
            chosen = self.select(name)
            if len(chosen) > 1:
                raise InvalidInput(
                    f"--env {name!r} selects {len(chosen)} environments ({', '.join(chosen)}); this command takes "
                    "one (the playbooks and `erpops run` take several: a fleet run)"
                )
            name = chosen[0]
        name = name or (SANDBOX if SANDBOX in self.environments or not self.environments else None)
        if name is None:
            names = ", ".join(sorted(self.environments))
            raise InvalidInput(f"no --env given; environments in {self.source}: {names}")
        if name not in self.environments:
            if name == SANDBOX:
                return sandbox_environment()
            names = ", ".join(sorted(self.environments)) or "(none)"
            where = self.source or "the built-in configuration"
            raise InvalidInput(f"unknown environment {name!r} in {where}; known: {names}")
        return self.environments[name]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def sandbox_root() -> Path:
    """Where ``erpops sandbox`` keeps its servers, object store and filestore."""
    if "ERPOPS_SANDBOX_DIR" in os.environ:
        return Path(os.environ["ERPOPS_SANDBOX_DIR"]).expanduser()
    return xdg_base("XDG_DATA_HOME", ".local/share") / "erpops" / "sandbox"


SANDBOX_PRIMARY_PORT = 5432
SANDBOX_STANDBY_PORT = 5433


def sandbox_environment() -> Environment:
    """The built-in environment used when there is no erpops.yaml (see ``erpops sandbox``)."""
    root = sandbox_root()
    runtime: dict[str, Any] = {}
    record = root / "runtime.json"
    if record.is_file():
        import json

        try:
            runtime = json.loads(record.read_text())
        except ValueError:
            runtime = {}
    return Environment(
        name=SANDBOX,
        tier="non-production",
        database=Database(
            dsn=f"postgresql://postgres@/postgres?host={root / 'primary'}&port={SANDBOX_PRIMARY_PORT}",
            name="odoo",
        ),
        standby=Database(
            dsn=f"postgresql://postgres@/postgres?host={root / 'standby'}&port={SANDBOX_STANDBY_PORT}",
            name="odoo",
        ),
        storage=Storage(url=f"file://{root / 'storage'}"),
        odoo=Odoo(filestore=str(root / "filestore" / "odoo"), image=runtime.get("image")),
        runtime=_sandbox_runtime(runtime),
        ingress=_sandbox_ingress(runtime),
        # `sandbox up --archive`: WAL archived into the store, base backups physical
        backup=BackupSettings(method="physical") if (root / "archive.json").is_file() else BackupSettings(),
    )


SANDBOX_HTTPS_PORT, SANDBOX_HTTP_PORT, SANDBOX_API_PORT = 18443, 18080, 18099


def _sandbox_runtime(found: dict[str, Any]) -> Runtime:
    """The sandbox's Docker runtime (recorded by ``erpops sandbox up`` when an engine answered):
    web (2 instances of the demo image on 8069) and cron (1), project ``erpops-sandbox``."""
    if found.get("kind") != "docker":
        return Runtime()
    quick = {"interval": 1, "timeout": 2, "retries": 3, "start_period": 10}
    services = {
        "web": {"port": 8069, "replicas": 2, "healthcheck": quick, "docker": {"stop_timeout": 5}},
        "cron": {"replicas": 1, "command": ["/bin/httpd", "-f", "-p", "9090", "-h", "/www"],
                 "min_ready_seconds": 0.5, "docker": {"stop_timeout": 5}},
    }  # fmt: skip
    return Runtime(kind="docker", project="erpops-sandbox", services=services)


def _sandbox_ingress(found: dict[str, Any]) -> Ingress | None:
    """Traefik in front of the sandbox's web on https://localhost:18443 (its own certificate)."""
    if found.get("kind") != "docker" or not found.get("traefik_image"):
        return None
    return Ingress(
        host="localhost",
        bind="127.0.0.1",
        https_port=SANDBOX_HTTPS_PORT,
        http_port=SANDBOX_HTTP_PORT,
        api_port=SANDBOX_API_PORT,
        image=found["traefik_image"],
        drain_seconds=0.5,
    )


def _working_directory(wanted: str) -> Path:
    """The current directory; a clear error when it was removed under the shell (``wanted``: what
    needed it), where a bare ``os.getcwd()`` would be a crash."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise InvalidInput(
            f"the current directory no longer exists (removed while this shell was in it): cannot look for {wanted}",
            hint="cd to a directory that exists, or point --config or ERPOPS_CONFIG at the file by its absolute path",
        ) from None


def find_config(explicit: str | None = None) -> Path | None:
    """``--config``, else ``$ERPOPS_CONFIG``, else ``./erpops.yaml`` when it exists; None: the
    built-in sandbox configuration. A relative path is the current directory's."""
    chosen = explicit or os.environ.get("ERPOPS_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_absolute():
            _working_directory(chosen)
        return path
    here = _working_directory(f"./{CONFIG_NAME}") / CONFIG_NAME
    return here if here.exists() else None


def load_config(explicit: str | None = None) -> Config:
    """Load erpops.yaml (``--config``, ``ERPOPS_CONFIG`` or ./erpops.yaml); the built-in sandbox
    configuration when there is none. Errors carry file:line and path; exit 2."""
    path = find_config(explicit)
    if path is None:
        cfg = Config(environments={SANDBOX: sandbox_environment()})
        cfg.source = "built-in sandbox configuration"
        return cfg
    if not path.exists():
        raise ValidationFailed([Issue(str(path), None, "", "configuration file not found")])
    doc = yamlfile.load(path)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ValidationFailed([doc.issue((), "expected a mapping with 'environments'")])
    try:
        cfg = Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ValidationFailed(yamlfile.pydantic_issues(doc, exc) + _service_issues(doc)) from None
    issues: list[Issue] = []
    for env_name, env in cfg.environments.items():
        for rb, spec in env.runbooks.items():
            try:
                from packaging.specifiers import SpecifierSet

                SpecifierSet(spec)
            except Exception:
                issues.append(doc.issue(("environments", env_name, "runbooks", rb), f"bad version specifier {spec!r}"))
    issues += _service_issues(doc)
    if issues:
        raise ValidationFailed(issues)
    cfg.source = str(path)
    return cfg


def _service_issues(doc: Any) -> list[Issue]:
    """``runtime.services`` entries checked as the runtimes will read them, with file:line (an
    unknown key such as ``replicaz`` would otherwise run with the default)."""
    from erpops.service_spec import ServiceSpec

    issues: list[Issue] = []
    envs = doc.data.get("environments") if isinstance(doc.data, dict) else None
    for env_name, env in (envs or {}).items() if isinstance(envs, dict) else ():
        runtime = env.get("runtime") if isinstance(env, dict) else None
        services = runtime.get("services") if isinstance(runtime, dict) else None
        for name, raw in (services or {}).items() if isinstance(services, dict) else ():
            if raw is not None and not isinstance(raw, dict):
                continue  # the model's own check names it
            try:
                ServiceSpec.model_validate(raw or {})
            except ValidationError as exc:
                base = ("environments", env_name, "runtime", "services", name)
                issues += yamlfile.pydantic_issues(doc, exc, base)
    return issues
