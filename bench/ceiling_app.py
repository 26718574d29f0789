"""The ceiling for `make bench`: a bare FastAPI app with one `async def` endpoint.

Served with the same uvicorn flags as the rendered services; what it reaches is the most a
FastAPI endpoint can do on this machine, so the services' figures are read as ratios to it.
"""

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
