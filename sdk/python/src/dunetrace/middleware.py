"""ASGI and WSGI middleware: one Dunetrace run per HTTP request.

ASGI (FastAPI / Starlette)::

    app.add_middleware(DunetraceASGIMiddleware, dt=dt, agent_id="my-api", model="gpt-4o")

WSGI (Flask / Django)::

    app.wsgi_app = DunetraceWSGIMiddleware(app.wsgi_app, dt=dt, agent_id="my-api")
    application = DunetraceWSGIMiddleware(get_wsgi_application(), dt=dt, agent_id="django-api")

Each HTTP request opens a run with ``dt.run()``; inside the request ``get_current_run()``
returns it (in the handler, in the threads the framework runs sync endpoints in, in a streamed
body's generator), and ASGI apps also find it on ``request.state.dunetrace_run``
(``scope["state"]``), WSGI apps in ``environ["dunetrace.run"]``.

How a request's run ends:

* **When the response is finished**: on ASGI after the last ``http.response.body`` (``more_body``
  false) has been sent, on WSGI when the server closes the response iterable — so a streamed
  response is one run until its last chunk.
* **Completed** for a 1xx-3xx response (exit reason ``final_answer``, unless the handler set one)
  and for a **4xx** (exit reason ``completed``): the client's request was refused — bad input,
  not found, unauthorised — which is not the agent failing.
* **Errored** when the app raised (the exception's class is the error type), when the response
  is a **5xx** (``HTTPServerError``; this covers the 500 Flask or Django return after catching the
  handler's exception themselves), and when the request was **cancelled** before its response was
  finished: a ``CancelledError``, a client disconnect the app or server reported
  (``ClientDisconnected``), a WSGI iterable closed before it was exhausted
  (``ClientDisconnected``), or an ASGI app that returned without finishing its response
  (``IncompleteResponse``). A client that leaves while a handler that never reads the request
  again is still working goes unnoticed: servers drop writes to a closed connection silently.

Privacy: nothing of the request — method, path, query string, headers, body — goes into the run:
the span contract (docs/sdk-spans.md) has no attribute for them and the run needs no input. Only
``http`` scopes open runs; ``lifespan`` and ``websocket`` scopes pass through untouched. Nothing
here touches the network: runs leave through the SDK's batch exporter.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .client import Dunetrace, _RunScope
    from .run_context import RunContext

logger = logging.getLogger("dunetrace")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
App = TypeVar("App", ASGIApp, WSGIApp)

STATE_KEY = "dunetrace_run"  # request.state.dunetrace_run (ASGI scope["state"])
ENVIRON_KEY = "dunetrace.run"  # environ["dunetrace.run"] (WSGI), as the published SDK names it


class HTTPServerError(Exception):
    """The request was answered with a 5xx status (the run's error type)."""


class ClientDisconnected(Exception):
    """The client went away before the response was finished (the run's error type)."""


class IncompleteResponse(Exception):
    """The ASGI app returned without finishing its response (the run's error type)."""


def _outcome(run: RunContext, status: int | None) -> BaseException | None:
    """How a finished response ends the run: the error for a 5xx, else None with the exit reason set."""
    if status is not None and status >= 500:
        return HTTPServerError(f"HTTP {status} response")
    if run.exit_reason is None:
        if status is not None and 400 <= status < 500:
            run.exit_reason = "completed"  # the request was refused; the agent did not fail
        else:
            run.final_answer()
    return None


def _end(run: RunContext, error: BaseException | None) -> None:
    """End the run now (idempotent: the first end wins); never raises into the request."""
    try:
        run._end(error)
    except Exception:
        logger.debug("Dunetrace: could not record the end of run %s", run.run_id, exc_info=True)


def _exit(scope: _RunScope, error: BaseException | None) -> None:
    """Leave ``dt.run()``: the current run is reset and the run ended (if it was not already)."""
    tb: TracebackType | None = error.__traceback__ if error is not None else None
    scope.__exit__(type(error) if error is not None else None, error, tb)


class _RequestRuns(Generic[App]):
    """What both middlewares hold: the app they wrap and how its requests' runs are opened (the
    published SDK's signature)."""

    def __init__(
        self,
        app: App,
        dt: Dunetrace,
        agent_id: str,
        *,
        model: str = "unknown",
        tools: list[str] | None = None,
    ) -> None:
        self.app: App = app
        self.dt = dt
        self.agent_id = agent_id
        self.model = model
        self.tools = list(tools or [])


# --- ASGI -------------------------------------------------------------------------------------


class DunetraceASGIMiddleware(_RequestRuns[ASGIApp]):
    """ASGI middleware: a run per HTTP request, current for the request's task (``get_current_run()``)
    and on ``scope["state"]["dunetrace_run"]`` (Starlette / FastAPI ``request.state.dunetrace_run``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":  # lifespan, websocket: untouched
            await self.app(scope, receive, send)
            return
        run_scope = self.dt.run(self.agent_id, model=self.model, tools=self.tools)
        run = run_scope.__enter__()
        status: int | None = None
        trailers = False
        finished = False
        disconnected = False

        async def receive_watching() -> Message:
            nonlocal disconnected
            message = await receive()
            if message.get("type") == "http.disconnect" and not finished:
                disconnected = True
            return message

        async def send_watching(message: Message) -> None:
            nonlocal status, trailers, finished
            kind = message.get("type")
            if kind == "http.response.start":
                status = int(message.get("status", 200))
                trailers = bool(message.get("trailers", False))
            await send(message)
            if finished:
                return
            if kind == "http.response.body" or kind == "http.response.zerocopysend":
                last = not message.get("more_body", False) and not trailers
            elif kind == "http.response.trailers":
                last = not message.get("more_trailers", False)
            else:
                last = kind == "http.response.pathsend"
            if last:
                finished = True
                error = ClientDisconnected("the client left before the response") if disconnected else None
                _end(run, error or _outcome(run, status))

        error: BaseException | None = None
        try:
            state = scope.get("state")
            if not isinstance(state, MutableMapping):
                state = scope["state"] = {}
            state[STATE_KEY] = run  # the server's per-request copy of the lifespan state (ASGI spec)
            await self.app(scope, receive_watching, send_watching)
        except BaseException as exc:  # asyncio.CancelledError included: the request was cancelled
            error = exc
            raise
        finally:
            if error is None and not finished:
                if disconnected:
                    error = ClientDisconnected("the client left before the response was finished")
                else:
                    error = IncompleteResponse("the app returned without finishing its response")
            _exit(run_scope, error)


# --- WSGI -------------------------------------------------------------------------------------


class DunetraceWSGIMiddleware(_RequestRuns[WSGIApp]):
    """WSGI middleware: a run per request, current while the app runs and while its response is
    iterated (``get_current_run()``), and on ``environ["dunetrace.run"]``; it ends when the server
    closes the response."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # The request's own context: the run is current in it for the app call and every step of
        # the response's iteration, and the server thread's context is never changed.
        context = contextvars.copy_context()
        run_scope = self.dt.run(self.agent_id, model=self.model, tools=self.tools)
        run = context.run(run_scope.__enter__)
        environ[ENVIRON_KEY] = run
        response = _Response(context, run_scope, run)

        def start_response_watching(status: str, headers: Any, exc_info: Any = None) -> Any:
            try:
                response.status = int(str(status).split(None, 1)[0])
            except ValueError:
                response.status = None
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = context.run(self.app, environ, start_response_watching)
        except BaseException as exc:
            context.run(_exit, run_scope, exc)
            raise
        response.body = body
        return response


class _Response:
    """The app's response iterable, iterated in the request's context; closing it ends the run."""

    def __init__(self, context: contextvars.Context, run_scope: _RunScope, run: RunContext) -> None:
        self._context = context
        self._run_scope = run_scope
        self._run = run
        self.status: int | None = None
        self.body: Iterable[bytes] = ()
        self._iterator: Iterator[bytes] | None = None
        self._exhausted = False
        self._error: BaseException | None = None
        self._closed = False

    def __len__(self) -> int:  # lets a server set Content-Length for a one-block body
        return len(self.body)  # type: ignore[arg-type]  # TypeError when not sized, as servers expect

    def __iter__(self) -> _Response:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self.body)
        try:
            return self._context.run(next, self._iterator)
        except StopIteration:
            self._exhausted = True
            raise
        except BaseException as exc:
            self._error = exc
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        error = self._error
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                self._context.run(close)
        except BaseException as exc:
            error = error or exc
            raise
        finally:
            if error is None and not self._exhausted:
                error = ClientDisconnected("the response was closed before it was sent in full")
            if error is None:
                error = _outcome(self._run, self.status)
            self._context.run(_exit, self._run_scope, error)


__all__ = [
    "ClientDisconnected",
    "DunetraceASGIMiddleware",
    "DunetraceWSGIMiddleware",
    "HTTPServerError",
    "IncompleteResponse",
]
