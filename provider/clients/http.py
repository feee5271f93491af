"""The HTTP session every platform client uses: retries with backoff that honor Retry-After."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from envvars_provider.errors import PlatformError, ProviderError, UnreachableError

RETRY_STATUSES = (429, 500, 502, 503, 504)
GATEWAY_STATUSES = (502, 504)  # a proxy gave up on a request: the API behind it may still have applied it
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


def answer_lost(error: ProviderError) -> bool:
    """Whether a failed POST may still have been applied: no answer came, or a gateway gave up waiting for one."""
    return isinstance(error, UnreachableError) or (isinstance(error, PlatformError)
                                                   and error.status in GATEWAY_STATUSES)


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response's JSON body when it is an object, else an empty dict."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class RedirectRefused(ProviderError):
    """The API redirected a request to another origin, which the provider never follows."""


def origin(url: str) -> str:
    """`scheme://host:port` of `url`, the port made explicit; no credentials, path or query."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a Location header with a bad port or bracket: no origin of ours
        return "(a malformed URL)"
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class _OtherOrigin(Exception):
    """Raised inside requests' redirect loop; `ApiSession.call` turns it into `RedirectRefused`."""

    def __init__(self, status: int, target: str):
        super().__init__(target)
        self.status = status
        self.target = target


class _SameOriginSession(requests.Session):
    """Follows a redirect only within one origin: requests would re-send the body (secret values) elsewhere."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        # Called for every redirect hop after the new URL is set and before anything is sent to it.
        target = origin(prepared_request.url or "")
        if target != origin(response.url):
            raise _OtherOrigin(response.status_code, target)
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]  # untyped in stubs


class ApiSession:
    """A token-authenticated JSON session against one base URL: a bearer token, or the token in `token_header`."""

    def __init__(self, base_url: str, token: str | None, error_reason: Any, auth_hint: str,
                 retry: Retry | None = None, token_header: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.error_reason = error_reason
        self.auth_hint = auth_hint
        self.session = _SameOriginSession()
        adapter = HTTPAdapter(max_retries=retry or retry_policy(), pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # A POST is retried only when it was never applied: on 429, or when the connection was never
        # made; never after it was sent (a read error or timeout), which could create a second VM.
        post_retry = (retry or retry_policy()).new(status_forcelist=(429,), allowed_methods=frozenset({"POST"}),
                                                   read=False, other=0)
        self.post_adapter = HTTPAdapter(max_retries=post_retry, pool_maxsize=32)
        if token:
            self.session.headers.update({token_header: token} if token_header else
                                        {"Authorization": f"Bearer {token}"})
        self.session.headers["User-Agent"] = "pulumi-resource-envvars"

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        """Send a request (retrying per policy); raise `PlatformError` unless the status is expected.

        A redirect is followed within the base URL's origin only; one elsewhere raises `RedirectRefused`.
        """
        url = self.base_url + path
        try:
            if method == "POST":
                response = self._post(url, **kwargs)
            else:
                response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except _OtherOrigin as exc:
            raise RedirectRefused(
                f"{method} {path} was redirected (HTTP {exc.status}) to another origin, {exc.target}: refused, as "
                "following it would hand that origin the request and its secret values; point the provider's "
                "URL setting at the API's own address") from None
        except requests.RequestException as exc:
            raise UnreachableError(f"{method} {self.base_url}{path}: no answer after retries ({type(exc).__name__})") \
                from None
        if response.status_code not in expect:
            reason = self.error_reason(response)
            if response.status_code in (401, 403):
                reason += f" ({self.auth_hint})"
            raise PlatformError(method, path, response.status_code, reason)
        return response

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        request = self.session.prepare_request(requests.Request("POST", url, **kwargs))
        # As `Session.request` would: the environment's proxies and CA bundle apply to POSTs too.
        settings = self.session.merge_environment_settings(request.url, {}, None, None, None)
        return self.post_adapter.send(request, timeout=TIMEOUT, proxies=settings["proxies"],
                                      verify=settings["verify"] if settings["verify"] is not None else True,
                                      cert=settings["cert"])
