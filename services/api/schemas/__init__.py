"""Request bodies and query strings of the v1 API (pydantic). The same models validate requests
and produce the OpenAPI document."""
