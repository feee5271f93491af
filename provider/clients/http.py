"""The HTTP session every platform client uses: retries with backoff that honor Retry-After."""

from __future__ import annotations

import os
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from envvars_provider.errors import PlatformError, UnreachableError

RETRY_STATUSES = (429, 500, 502, 503, 504)
# connect, read (a VM boot is waited for); ENVVARS_HTTP_TIMEOUT overrides the read timeout, in seconds.
TIMEOUT = (5.0, float(os.environ.get("ENVVARS_HTTP_TIMEOUT") or 120.0))


def retry_policy(total: int = 5, backoff: float = 0.25) -> Retry:
    """Retry connection errors and 429/5xx on idempotent methods; only 429 on POST (it was not applied)."""
    return Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        backoff_factor=backoff,
        backoff_max=10,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class ApiSession:
    """A bearer-authenticated JSON session against one base URL."""

    def __init__(self, base_url: str, token: str | None, error_reason: Any, retry: Retry | None = None):
        self.base_url = base_url.rstrip("/")
        self.error_reason = error_reason
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry or retry_policy(), pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        post_retry = (retry or retry_policy()).new(status_forcelist=(429,), allowed_methods=frozenset({"POST"}))
        self.post_adapter = HTTPAdapter(max_retries=post_retry, pool_maxsize=32)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = "pulumi-resource-envvars"

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        """Send a request (retrying per policy); raise `PlatformError` unless the status is expected."""
        url = self.base_url + path
        try:
            if method == "POST":
                response = self._post(url, **kwargs)
            else:
                response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise UnreachableError(f"{method} {self.base_url}{path}: no answer after retries ({type(exc).__name__})") \
                from None
        if response.status_code not in expect:
            raise PlatformError(method, path, response.status_code, self.error_reason(response))
        return response

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        request = self.session.prepare_request(requests.Request("POST", url, **kwargs))
        return self.post_adapter.send(request, timeout=TIMEOUT)
