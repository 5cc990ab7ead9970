"""The ceiling for `benchmarks/serving.py`: the least an HTTP JSON service can do around the predictor.

Plain ASGI under uvicorn, no framework: read the body, parse it, `ModelPredictor.predict(rows).to_records()`, encode
the answer. No validation, log, metrics or keys. Run by the benchmark as `uvicorn bare_service:app`; it serves the
model named by ML_PROJECT_SERVE_MODEL with the settings of the environment.
"""

import os

import orjson

from ml_project.serve.predictor import ModelPredictor
from ml_project.settings import get_settings

predictor = ModelPredictor.load(os.environ["ML_PROJECT_SERVE_MODEL"], get_settings())


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return await send({"type": "http.response.body", "body": b"ok"})
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    answer = orjson.dumps({"predictions": predictor.predict(orjson.loads(body)["rows"]).to_records()})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
