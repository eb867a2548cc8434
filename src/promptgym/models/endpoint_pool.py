"""A pool of servers of one model behind the OpenAI-compatible backend: the endpoints as parsed
from the base URLs (``URL1,URL2#4``: ``#N`` is that server's limit of requests in flight; a key in
a URL taken out of it), each with a circuit breaker, and one batch's scheduling over them
(``EndpointPool``): round robin over the endpoints whose circuit lets requests through, a failed
attempt made again on another endpoint. See ``openai_backend`` for the rules in full."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from promptgym.errors import PromptgymError
from promptgym.models.openai_transport import counting_client, note
from promptgym.secrets import REDACTED, redact_url, remember_secret, scrub

OPENAI_URL = "https://api.openai.com/v1"
COOLDOWN = 2.0  # seconds a failing pool endpoint is left alone, doubled per failure in a row ...
MAX_COOLDOWN = 60.0  # ... up to this
DOWN_AFTER = 3  # failures in a row (a trip and failed probes) of every endpoint: the pool is down


class Endpoint:
    """One server of a pool: its base URL (``url``: as given, less any key, which is ``api_key``;
    ``shown`` is the given URL redacted, as it is printed and stored), its in-flight limit and its
    circuit breaker.

    The circuit's state outlives a batch (each batch runs on its own event loop): ``failures`` in a
    row (0 = closed), ``open_until`` (monotonic seconds: no request before then; after it, one probe
    at a time is let through), ``generation`` (bumped on each change, so a failure of a request sent
    before the last change is not counted twice) and ``last_error`` for the all-down message.
    """

    def __init__(self, url: str | None, limit: int):
        self.shown = redact_url(url) if url else OPENAI_URL
        self.url, self.api_key, self.query = split_key(url) if url else (None, None, {})
        remember_secret(self.api_key)  # as the server gets it (unquoted): scrubbed from any message
        self.where = self.shown.rstrip("/")
        self.limit = limit
        self.failures = 0
        self.open_until = 0.0
        self.generation = 0
        self.last_error = ""
        self.in_flight = 0  # per batch (reset by EndpointPool)
        self.probing = False

    def client_args(self) -> dict[str, Any]:
        """The SDK client's arguments for this endpoint: the base URL without key or query, the key
        (sent as ``Authorization: Bearer KEY``) and the URL's other query items."""
        args: dict[str, Any] = dict(base_url=self.url, api_key=self.api_key)
        if self.query:
            args["default_query"] = dict(self.query)
        return args

    def trip(self, now: float, cooldown: float, error: str) -> None:
        """One more failure in a row: open the circuit for ``cooldown`` doubled per earlier failure."""
        self.failures += 1
        self.generation += 1
        self.open_until = now + min(cooldown * 2 ** (self.failures - 1), max(MAX_COOLDOWN, cooldown))
        self.last_error = error

    def __repr__(self) -> str:
        return f"Endpoint({self.shown!r}, limit={self.limit}, failures={self.failures})"


KEY_PARAMS = ("api_key", "api-key", "apikey", "key")  # query items that carry the key


def split_key(url: str) -> tuple[str, str | None, dict[str, str]]:
    """A base URL as the user wrote it -> (the URL the SDK gets, the key, other query items).

    The key may be written as the password of the URL's user info (``http://user:KEY@host/v1``),
    as the whole user info (``http://KEY@host/v1``) or as ``?api_key=KEY``. The OpenAI API wants it
    as ``Authorization: Bearer KEY``: left in the URL, httpx would send user info as HTTP Basic auth,
    and the SDK appends its routes to the raw path, query included (``/v1/?api_key=KEY
    chat/completions``). So user info and the query are taken out; other query items (e.g. Azure's
    ``api-version``) go back on every request as the SDK's ``default_query``. A redacted key
    (``***``, from a stored spec) is no key: the environment's is used."""
    parts = urlsplit(url)
    keys: list[str] = []
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        keys.append(unquote(password if sep else user))
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in KEY_PARAMS:
            keys.append(value)
        else:
            query[name] = value
    keys = [k for k in dict.fromkeys(keys) if k and k != REDACTED]
    if len(keys) > 1:
        raise PromptgymError(f"openai backend: base URL '{redact_url(url)}' holds two different keys "
                             "(in its user info and its query); give one")
    return urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment)), (keys[0] if keys else None), query


def parse_endpoints(base_url: str | Sequence[str] | None, default_limit: int) -> list[Endpoint]:
    """``"URL"``, ``"URL1,URL2#4"`` or a list of such URLs -> endpoints. ``#N`` after a URL sets its
    limit of requests in flight (else ``default_limit``); a base URL has no use for a fragment, so
    ``#`` is free for this. No URL: one endpoint, the hosted API."""
    items = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
    parts = [p.strip() for item in items for p in (item or "").split(",")]
    if not any(parts):
        return [Endpoint(None, default_limit)]
    endpoints = []
    for part in parts:
        if not part:
            listed = ",".join(redact_url(p) for p in parts)
            raise PromptgymError(f"openai backend: an empty URL in the list of base URLs '{listed}' "
                                 "(separate them with single commas)")
        url, sep, limit_text = part.rpartition("#") if "#" in part else (part, "", "")
        limit = default_limit
        if sep:
            if not limit_text.isdigit() or int(limit_text) < 1:
                raise PromptgymError(f"openai backend: '{redact_url(part)}': after '#' give the endpoint's limit of "
                                     "requests in flight, a whole number >= 1 (e.g. http://127.0.0.1:8000/v1#4)")
            limit = int(limit_text)
        if not url.startswith(("http://", "https://")):
            raise PromptgymError(f"openai backend: base URL '{redact_url(url)}' must start with http:// or https:// "
                                 "(e.g. openai:MODEL@http://127.0.0.1:8000/v1)")
        endpoints.append(Endpoint(url, limit))
    seen = [e.where for e in endpoints]
    if len(set(seen)) != len(seen):
        raise PromptgymError(f"openai backend: an endpoint is listed twice in {', '.join(seen)}; give each server once "
                             "(raise its limit with #N instead)")
    return endpoints


class EndpointPool:
    """One batch's view of the endpoints: an SDK client each, and the scheduling.

    ``request(send)`` makes one HTTP request: it waits for an endpoint with a free slot (round robin
    over the endpoints whose circuit lets requests through, first come first served), and in a pool
    an attempt that fails with a connection error, a timeout, 408/409/429 or 5xx opens that
    endpoint's circuit and is made again on another endpoint. The evaluator charges a call when its
    answer comes back, so a call is charged once however many endpoints it tried.

    Why no library: the breaker's state has to be read by the scheduler (which endpoint may take
    the next request, when to wake the waiting ones, when every endpoint is down), and the
    breakers on PyPI (pybreaker, aiobreaker, purgatory) wrap one call and decide alone; the code
    needed is the ~40 lines of ``_pick``, ``_failed`` and ``_succeeded``.
    """

    def __init__(self, backend: Any):
        self.backend = backend
        self.endpoints = backend.endpoints
        self.failover = backend.failover
        self.clients: list[Any] = []
        self._next = 0  # round robin: where the next search for a free endpoint starts
        self._waiting: list[tuple[int, int, asyncio.Future]] = []  # heap of (ticket, -, future): the line
        self._live = 0  # requests in the line (the heap may also hold futures already given up)
        self._tickets = itertools.count()
        openai = backend._openai
        self._transient = (openai.APIConnectionError,)  # timeouts included (APITimeoutError)
        self._status_error = openai.APIStatusError
        self._openai_error = openai.OpenAIError
        # Attempts of one request before it gives up: the retries, and each endpoint at least once.
        self.max_attempts = backend.max_retries + len(self.endpoints)

    async def __aenter__(self) -> "EndpointPool":
        openai = self.backend._openai
        for endpoint in self.endpoints:
            endpoint.in_flight, endpoint.probing = 0, False
            client = openai.AsyncOpenAI(**self.backend._client_args, **endpoint.client_args(),
                                        http_client=counting_client(openai))
            self.clients.append(await client.__aenter__())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for client in self.clients:
            await client.__aexit__(*exc)

    async def request(self, send, model: str | None = None) -> Any:
        """``await send(client)`` on an endpoint (see the class docstring)."""
        attempts = 0
        while True:
            k, probe = await self._acquire(model)
            endpoint = self.endpoints[k]
            generation = endpoint.generation
            try:
                result = await send(self.clients[k])
            except self._openai_error as exc:
                if not (self.failover and self._is_transient(exc)):
                    self._succeeded(endpoint, probe)  # an answer (4xx) or our own mistake: the server lives
                    raise PromptgymError(scrub(self.backend.describe(exc, model, endpoint if self.failover else None))) \
                        from None
                note("failover")
                attempts += 1
                problem = self.backend._problem(exc)
                self._failed(endpoint, generation, probe, problem)
                if attempts >= self.max_attempts:
                    raise PromptgymError(scrub(f"{self.backend._where(model, endpoint)}: {problem} (the request "
                                               f"failed {attempts} times over the pool's endpoints)")) from None
                continue
            except asyncio.CancelledError:
                if probe:
                    endpoint.probing = False
                raise
            except BaseException:
                self._succeeded(endpoint, probe)  # e.g. cut-short JSON: something answered
                raise
            finally:
                endpoint.in_flight -= 1
                self._wake(1)
            self._succeeded(endpoint, probe)
            return result

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, self._transient):
            return True
        status = getattr(exc, "status_code", None) if isinstance(exc, self._status_error) else None
        return status is not None and (status in (408, 409, 429) or status >= 500)

    async def _acquire(self, model: str | None) -> tuple[int, bool]:
        """The index of an endpoint with a slot taken for this request, and whether the request is
        the probe of a half-open circuit. While none is free, waits in line: first come, first
        served (a ticket keeps a request's place when it is woken and must wait again)."""
        ticket = None
        loop = asyncio.get_running_loop()
        while True:
            self._check_down(model)
            if ticket is not None or self._live == 0:  # newcomers queue behind those waiting
                picked = self._pick()
                if picked is not None:
                    return picked
            if ticket is None:
                ticket = next(self._tickets)
            future = loop.create_future()
            heapq.heappush(self._waiting, (ticket, next(self._tickets), future))  # (the second: unique)
            self._live += 1
            now = time.monotonic()
            # A circuit that reopens later wakes nobody: wait until then at most. (A full endpoint
            # past its cooldown wakes the line when a request of its own ends.)
            reopen = [e.open_until for e in self.endpoints if e.failures and not e.probing and e.open_until > now]
            try:
                if reopen:
                    await asyncio.wait_for(future, min(reopen) - now + 0.001)
                else:
                    await future
            except asyncio.TimeoutError:
                pass
            finally:
                self._live -= 1
                if not future.done():
                    future.cancel()  # left in the heap, skipped by _wake

    def _pick(self) -> tuple[int, bool] | None:
        now = time.monotonic()
        count = len(self.endpoints)
        for step in range(count):
            k = (self._next + step) % count
            endpoint = self.endpoints[k]
            if endpoint.in_flight >= endpoint.limit:
                continue
            probe = False
            if endpoint.failures:  # open, or half-open after its cooldown: one probe at a time
                if endpoint.open_until > now or endpoint.probing:
                    continue
                endpoint.probing = probe = True
            endpoint.in_flight += 1
            self._next = (k + 1) % count
            return k, probe
        return None

    def _failed(self, endpoint: Endpoint, generation: int, probe: bool, problem: str) -> None:
        if probe:
            endpoint.probing = False
        if endpoint.generation == generation or probe:  # else already counted: sent before the last trip
            endpoint.trip(time.monotonic(), self.backend.cooldown, problem)
        else:
            endpoint.last_error = problem
        self._wake(len(self._waiting))  # all re-check: the next reopening, or the pool is down

    def _succeeded(self, endpoint: Endpoint, probe: bool) -> None:
        if probe:
            endpoint.probing = False
        if endpoint.failures:
            endpoint.failures, endpoint.open_until = 0, 0.0
            endpoint.generation += 1
            self._wake(endpoint.limit)

    def _check_down(self, model: str | None) -> None:
        """The one-line error when every endpoint has failed ``DOWN_AFTER`` times in a row."""
        down = min(DOWN_AFTER, max(self.backend.max_retries, 1))
        if self.failover and all(e.failures >= down for e in self.endpoints):
            listed = "; ".join(f"{e.where}: {e.last_error}" for e in self.endpoints)
            self._wake(len(self._waiting))
            raise PromptgymError(scrub(f"{self.backend._where(model)}: every endpoint failed {down} or more times "
                                       f"in a row: {listed}"))

    def _wake(self, count: int) -> None:
        """Let the first ``count`` waiting requests look for a free endpoint again."""
        while count > 0 and self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                count -= 1
