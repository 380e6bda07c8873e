"""The web app of `bertforge serve`: one page and a small JSON API over the one model it was started with.

Safety by construction: requests carry text, never paths (the model folder is fixed at start,
the page's files are fixed routes); bodies are capped at 16 KB and texts at 2,000 characters;
every bad request is answered with a 4xx JSON `{"error": ...}`. Inference runs in a worker thread,
one request at a time (a lock), so the event loop stays free and the model is never shared.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route

from ..errors import BertforgeError
from ..files import read_json
from ..finetune.predict import predict
from ..finite import dumps
from ..generation import generate
from ..infer import embed, fill_mask, similar

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_CHARS = 2000
MAX_TOP_K = 20
MAX_NEW_TOKENS = 256  # per generate request: keeps one request to seconds on a CPU
MAX_SAMPLE_TOP_K = 1000  # generate's top-k (0 = off) may be larger than a list of answers
# The page's files: fixed names, read from the package; no request names a file.
ASSETS = {"/": ("index.html", "text/html"), "/static/app.js": ("app.js", "text/javascript"),
          "/static/style.css": ("style.css", "text/css")}
# Nothing may come from elsewhere: scripts, styles, images and requests stay on this server.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'"


class JSONResponse(StarletteJSONResponse):
    """Strict JSON: a NaN/inf number (say a diverged loss in the run's metrics) is sent as null,
    where Starlette's own would fail the request with a 500."""

    def render(self, content) -> bytes:
        return dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ApiError(Exception):
    """A request the API refuses: HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ServedModel:
    """The one model folder the server reads: a pretraining run or a fine-tuned folder."""

    def __init__(self, path: str | Path, device: str = "auto"):
        from ..api import load_model_folder

        self.path = Path(path)
        self.run, self.finetuned = load_model_folder(self.path, device)
        self.lock = threading.Lock()
        self._curves: bytes | None = None

    @property
    def kind(self) -> str:
        """"pretrain" (an MLM head: fill-mask), "causal" (a causal LM: generate), or the
        fine-tuning task ("classify", "ner")."""
        if self.finetuned is not None:
            return self.finetuned.task
        return "causal" if self.run.config.model.causal else "pretrain"

    @property
    def panels(self) -> list[str]:
        """The page's panels that apply to this model, in page order (one JS function each)."""
        first = {"pretrain": ["fill-mask"], "causal": ["generate"], "classify": ["classify"], "ner": ["tag"]}.get(
            self.kind, []
        )
        return [*first, "similarity", "neighbours", "info"]

    def info(self) -> dict:
        from ..model import count_parameters

        m = self.run.config.model
        out = {
            "name": self.path.resolve().name,
            "kind": self.kind,
            "panels": self.panels,
            "model": {
                "parameters": count_parameters(self.run.model), "layers": m.num_layers, "hidden_size": m.hidden_size,
                "heads": m.num_heads, "vocab_size": m.vocab_size, "max_seq_len": m.max_seq_len, "norm": m.norm,
            },
            "tokenizer": {"kind": self.run.tokenizer.kind, "mask_token": self.run.tokenizer.mask_token},
            "limits": {"max_chars": MAX_CHARS, "max_body_bytes": MAX_BODY_BYTES, "max_top_k": MAX_TOP_K,
                       "max_new_tokens": MAX_NEW_TOKENS},
            "curves": self.curves_png() is not None,
        }
        if self.finetuned is None:
            out["training"], out["metrics"] = self._pretrain_facts()
        else:
            out["labels"] = [str(label) for label in self.finetuned.labels]
            out["text_pair"] = bool(self.finetuned.config.finetune.text_pair_column)
            out["metrics"] = self._finetune_metrics().get("best", {}).get("validation", {})
        return out

    def _pretrain_facts(self) -> tuple[dict, dict]:
        from ..train.metrics import read_metrics

        trainer = self.run.checkpoint / "trainer.json"
        state = read_json(trainer) if trainer.is_file() else {}
        training = {k: state[k] for k in ("step", "tokens", "elapsed_s") if k in state}
        validation = read_metrics(self.path, "validation")
        last = validation[-1] if validation else {}
        return training, {k: v for k, v in last.items() if k not in ("split",)}

    def _finetune_metrics(self) -> dict:
        from ..finetune.config import METRICS_FILE

        path = self.path / METRICS_FILE
        return read_json(path) if path.is_file() else {}

    def curves_png(self) -> bytes | None:
        """The training curves (pretraining) or per-epoch validation scores (fine-tuning), made once."""
        if self._curves is None:
            try:
                self._curves = self._pretrain_curves() if self.finetuned is None else self._finetune_curves()
            except BertforgeError:
                self._curves = b""
        return self._curves or None

    def _pretrain_curves(self) -> bytes:
        import tempfile

        from ..plots import plot_runs

        with tempfile.TemporaryDirectory() as tmp:
            return plot_runs([self.path], Path(tmp) / "curves.png", x="tokens").read_bytes()

    def _finetune_curves(self) -> bytes:
        from ..plots import pyplot

        epochs = self._finetune_metrics().get("epochs", [])
        if not epochs:
            return b""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
        x = [e["epoch"] for e in epochs]
        ax.plot(x, [e["train_loss"] for e in epochs], marker=".", label="train loss")
        for key in epochs[0]["validation"]:
            ax.plot(x, [e["validation"].get(key, np.nan) for e in epochs], marker=".", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        return buffer.getvalue()

    def locked(self, work, *args):
        with self.lock:
            return work(*args)


# ---------------------------------------------------------------- requests


async def read_body(
    request: Request, fields: dict[str, type], required: tuple[str, ...], top_k_range: tuple[int, int] = (1, MAX_TOP_K)
) -> dict:
    """The JSON object of a request, checked: size, syntax, known fields, types, text lengths."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES // 1024} KB")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES // 1024} KB")
    except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing to log
        raise ApiError(400, "the client disconnected before the body was complete") from None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object, e.g. {\"text\": \"...\"}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; this endpoint takes {', '.join(fields)}")
    for name in required:
        if name not in data:
            raise ApiError(422, f"missing field {name!r}")
    for name, value in data.items():
        kind = fields[name]
        accepted = (int, float) if kind is float else kind  # a JSON number may be written 1 or 1.0
        if not isinstance(value, accepted) or isinstance(value, bool):
            what = {str: "a string", int: "an integer", float: "a number"}[kind]
            raise ApiError(422, f"{name!r} must be {what}")
        if kind is str:
            if len(value) > MAX_CHARS:
                raise ApiError(422, f"{name!r} is {len(value)} characters long; at most {MAX_CHARS}")
            if not value.strip():
                raise ApiError(422, f"{name!r} is empty")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape like "\ud800": JSON allows it, text cannot hold it
                raise ApiError(422, f"{name!r} is not valid Unicode text") from None
    low, high = top_k_range
    if "top_k" in data and not low <= data["top_k"] <= high:
        raise ApiError(422, f"'top_k' must be between {low} and {high}")
    return data


def needs(served: ServedModel, panel: str) -> None:
    if panel not in served.panels:
        raise ApiError(404, f"{panel} is not available for this model (a {served.kind} folder)")


async def infer(served: ServedModel, work, *args):
    """Run `work` in a worker thread, one request at a time; a user-fixable problem is a 422."""
    try:
        return await run_in_threadpool(served.locked, work, *args)
    except BertforgeError as e:
        raise ApiError(422, str(e)) from None


# ---------------------------------------------------------------- endpoints


async def page(request: Request) -> Response:
    name, media = ASSETS[request.url.path]
    text = resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")
    return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})


async def no_icon(request: Request) -> Response:
    return Response(status_code=204)  # browsers ask for one; there is none


async def info(request: Request) -> Response:
    served = request.app.state.served
    return JSONResponse(await run_in_threadpool(served.locked, served.info))


async def curves(request: Request) -> Response:
    served = request.app.state.served
    png = await run_in_threadpool(served.locked, served.curves_png)
    if png is None:
        raise ApiError(404, "this folder has no training curves (no metrics)")
    return Response(png, media_type="image/png")


async def fill_mask_api(request: Request) -> Response:
    served = request.app.state.served
    needs(served, "fill-mask")
    data = await read_body(request, {"text": str, "top_k": int}, ("text",))
    masks = await infer(served, fill_mask, served.run, data["text"], data.get("top_k", 5))
    return JSONResponse({"text": data["text"], "masks": masks})


async def similarity(request: Request) -> Response:
    served = request.app.state.served
    data = await read_body(request, {"a": str, "b": str}, ("a", "b"))
    vectors = await infer(served, embed, served.run, [data["a"], data["b"]], "mean")
    a, b = vectors
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    return JSONResponse({"cosine": cosine, "pooling": "mean"})


async def neighbours(request: Request) -> Response:
    served = request.app.state.served
    data = await read_body(request, {"word": str, "top_k": int}, ("word",))
    found = await infer(served, similar, served.run, data["word"], data.get("top_k", 10))
    return JSONResponse({"word": data["word"], "neighbours": found})


async def classify(request: Request) -> Response:
    served = request.app.state.served
    needs(served, "classify")
    data = await read_body(request, {"text": str, "text_pair": str}, ("text",))
    pairs = [data["text_pair"]] if "text_pair" in data else None
    (result,) = await infer(served, predict, served.finetuned, [data["text"]], pairs)
    return JSONResponse(result)


async def tag(request: Request) -> Response:
    served = request.app.state.served
    needs(served, "tag")
    data = await read_body(request, {"text": str}, ("text",))
    (result,) = await infer(served, predict, served.finetuned, [data["text"]])
    return JSONResponse(result)


async def generate_api(request: Request) -> Response:
    served = request.app.state.served
    needs(served, "generate")
    fields = {"text": str, "max_new_tokens": int, "temperature": float, "top_k": int, "top_p": float, "seed": int}
    data = await read_body(request, fields, ("text",), top_k_range=(0, MAX_SAMPLE_TOP_K))
    steps = data.get("max_new_tokens", 48)
    if not 1 <= steps <= MAX_NEW_TOKENS:
        raise ApiError(422, f"'max_new_tokens' must be between 1 and {MAX_NEW_TOKENS}")
    options = {k: data[k] for k in ("temperature", "top_k", "top_p", "seed") if k in data}
    result = await infer(served, lambda: generate(served.run, data["text"], max_new_tokens=steps, **options))
    return JSONResponse(result)


async def api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no such page or endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}
    return JSONResponse({"error": message.get(exc.status_code, exc.detail)}, status_code=exc.status_code)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("error while answering %s", request.url.path)
    return JSONResponse({"error": "internal error (a bug: see the server's log)"}, status_code=500)


ROUTES = [Route(path, page, methods=["GET"]) for path in ASSETS] + [
    Route("/favicon.ico", no_icon, methods=["GET"]),
    Route("/api/info", info, methods=["GET"]),
    Route("/api/curves.png", curves, methods=["GET"]),
    Route("/api/fill-mask", fill_mask_api, methods=["POST"]),
    Route("/api/similarity", similarity, methods=["POST"]),
    Route("/api/neighbours", neighbours, methods=["POST"]),
    Route("/api/classify", classify, methods=["POST"]),
    Route("/api/tag", tag, methods=["POST"]),
    Route("/api/generate", generate_api, methods=["POST"]),
]


def create_app(model: str | Path | ServedModel, device: str = "auto") -> Starlette:
    """The Starlette app serving `model` (a folder, loaded now, or a loaded ServedModel)."""
    served = model if isinstance(model, ServedModel) else ServedModel(model, device)
    app = Starlette(
        routes=ROUTES,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
    )
    app.add_middleware(HeadersMiddleware)
    app.state.served = served  # the handlers read the model from here
    return app


class HeadersMiddleware:
    """Content-Security-Policy and no-sniff on every response: the page can load nothing from elsewhere."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
