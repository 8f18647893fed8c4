"""The environment's front: Traefik, configured through its file provider and checked through its API."""
