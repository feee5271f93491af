"""Messages for the user, sent to the engine's log service so the CLI shows them as warnings.

The engine passes its address as the plugin's first argument, which `main` records here; without
one (tests driving the plugin over gRPC directly, or in-process), a warning goes to stderr instead.
"""

from __future__ import annotations

import logging

import grpc

from envvars_provider.protos import _load

log = logging.getLogger("envvars.provider")
engine: str | None = None  # the engine's address, set by `main`


def engine_address(argv: list[str]) -> str | None:
    """The engine's gRPC address among the plugin's arguments (the first that is not a flag)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def warn(message: str, urn: str = "") -> None:
    """Show `message` as a warning in the Pulumi CLI (never put a secret in it)."""
    address = engine
    if address is None:
        log.warning("%s", message)
        return
    engine_pb2, engine_pb2_grpc = _load("engine_pb2"), _load("engine_pb2_grpc")
    try:
        with grpc.insecure_channel(address) as channel:
            engine_pb2_grpc.EngineStub(channel).Log(
                engine_pb2.LogRequest(severity=engine_pb2.WARNING, message=message, urn=urn), timeout=10)
    except grpc.RpcError:
        log.warning("%s", message)
