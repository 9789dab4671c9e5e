"""A small HTTP client of the multitune API, used by the suggester, the workers and the CLI.

Transient failures (connection errors, 5xx, 429) are retried with exponential backoff, waiting
at least what a ``Retry-After`` header asks (the API sends one with 503 while its database is
away, and with 429); a 4xx is raised at once as `ApiRequestError` carrying the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import requests

#: The longest wait between two tries, whatever ``Retry-After`` says.
MAX_RETRY_WAIT_S = 30.0


class ApiRequestError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def retry_after_s(response: requests.Response) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds (its delay-seconds form)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class ApiClient:
    def __init__(
        self, base_url: str, token: str, timeout_s: float = 30.0, retry_for_s: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``path`` is relative to ``/v1``; returns the decoded JSON body (None for 204)."""
        url = f"{self.base_url}/v1{path}"
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.1
        while True:
            wait = delay
            try:
                response = self._session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout_s
                )
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            else:
                if response.status_code == 204:
                    return None
                if response.status_code < 400:
                    return response.json()
                retryable = response.status_code >= 500 or response.status_code == 429
                if not retryable or time.monotonic() > deadline:
                    try:
                        message = response.json().get("message", response.text)
                    except ValueError:
                        message = response.text
                    raise ApiRequestError(response.status_code, message)
                asked = retry_after_s(response)
                if asked is not None:
                    wait = min(max(asked, delay), MAX_RETRY_WAIT_S)
            time.sleep(wait)
            delay = min(delay * 2, 2.0)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, headers=headers)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def iterate(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, newest first."""
        params = {"limit": 1000, **params}
        while True:
            page = self.get(path, **params)
            yield from page["data"]
            before = page["paging"].get("before")
            if not before:
                return
            params["before"] = before

    def close(self) -> None:
        self._session.close()
