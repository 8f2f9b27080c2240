"""The frameworks' floors for `patron bench serve`: endpoints that return a constant, on BentoML and on plain
FastAPI."""

from __future__ import annotations

import bentoml
from fastapi import FastAPI

from patron.config import load_settings
from serving.server import bentoml_options

SETTINGS = load_settings()


@bentoml.service(name="floor", workers=SETTINGS.serving.workers, **bentoml_options(SETTINGS))
class Floor:
    """One endpoint, no work: what BentoML costs on this machine."""

    @bentoml.api(route="/ping")
    def ping(self) -> dict:
        """A constant."""
        return {"ok": True}


# The same constant on uvicorn + FastAPI alone (`uvicorn benchmarks.floor_service:fastapi_floor`): what BentoML adds.
fastapi_floor = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@fastapi_floor.post("/ping")
def fastapi_ping() -> dict:
    """A constant."""
    return {"ok": True}


@fastapi_floor.get("/readyz")
def fastapi_ready() -> dict:
    """Always ready."""
    return {"ok": True}


def serve_fastapi_floor(host: str, port: int, workers: int) -> None:
    """Serve `fastapi_floor` with uvicorn's own worker processes sharing one listening socket."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        f"{__name__}:fastapi_floor", host=host, port=port, workers=workers, access_log=False, log_level="warning"
    )
    # `uvicorn --workers N` binds with protocol 0, so asyncio never sets TCP_NODELAY on the connections and every
    # response waits about 40 ms for the client's delayed ACK (Nagle): bind naming TCP, as a single worker does.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    import sys

    serve_fastapi_floor(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
