"""Serve a rendered B2 variant with b2sdk's in-memory B2 in place of the real one.

For tests/test_fuzz.py: this suite has no B2 account and no network. Runs with the rendered
project as the working directory and its settings in the environment; nothing of it is
written into the project. The storage is built exactly like the rendered tests'
`b2_storage` fixture and replaces the `get_storage` dependency; the rest is the
project's own `app.main:app` under uvicorn.

Usage: python tests/fuzz_b2_server.py HOST PORT
"""

import asyncio
import os
import sys

# The rendered project (the working directory) before anything imports `app`.
sys.path.insert(0, os.getcwd())

import uvicorn
from app.api.v1.deps.storage import get_storage
from app.main import app
from app.services.back_blaze_b2 import BackBlaze
from b2sdk.v2 import B2HttpApiConfig, RawSimulator


def simulated_storage(bucket_name: str) -> BackBlaze:
    simulator = RawSimulator()
    key_id, key = simulator.create_account()
    config = B2HttpApiConfig(_raw_api_class=lambda _http: simulator)
    storage = BackBlaze(key_id, key, api_config=config)
    asyncio.run(storage.create_bucket(bucket_name))
    storage.select_bucket(bucket_name)
    return storage


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    storage = simulated_storage(os.environ["B2_BUCKET_NAME"])

    async def simulated() -> BackBlaze:
        return storage

    app.dependency_overrides[get_storage] = simulated
    uvicorn.run(app, host=host, port=port, access_log=False)


if __name__ == "__main__":
    main()
