"""The Docker runtime (``runtime.kind: docker``): services as labelled containers on one engine.

- :mod:`.runtime`: ``DockerRuntime``, the :class:`erpops.backends.runtime.base.Runtime` of one
  Docker engine (the only place, with :mod:`.front`, that imports the docker SDK);
- :mod:`.front`: the environment's Traefik front (``ingress:``) of the ingress service.

Loaded only by :func:`erpops.backends.runtime.open_runtime` when an environment runs on Docker.
"""
