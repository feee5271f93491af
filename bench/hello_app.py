"""The baseline of server_throughput: FastAPI hello-world routes on the server's stack.

Served like `envvars-server serve` serves its app (`uvicorn.run` in one process, the same log
settings), with the same kind of route (a plain `def`, run in the threadpool): what is left of a
request's cost is the framework's and the server's, not the work of our routes.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="hello")


class Hello(BaseModel):
    """A body shaped like PUT /api/v1/env_vars'."""

    vars: dict[str, str]
    replace: bool = False


@app.get("/hello")
def hello() -> dict[str, str]:
    """Hello, world."""
    return {"hello": "world"}


@app.put("/hello")
def hello_put(body: Hello) -> dict[str, dict[str, str]]:
    """Hello, world, with a JSON body parsed and echoed."""
    return {"vars": body.vars}


def main() -> None:
    """`python -m bench.hello_app --port N`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
