"""The web dashboard: server-rendered pages (`views`) behind a login that keeps the client's
token digest in a signed session cookie (`session`). Charts are drawn in the browser by small
vanilla JS/SVG modules under ``static/dashboard/`` from the ``/v1/.../analytics`` endpoints."""
