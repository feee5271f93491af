"""The provider plugin as the engine sees it: a child process that prints its port, and a gRPC stub."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from envvars_provider.config import settings
from envvars_provider.protos import provider_pb2, provider_pb2_grpc
from envvars_provider.values import SECRET_SIG, SIG_KEY, from_struct, to_struct

PLUGIN = Path(sys.executable).parent / "pulumi-resource-envvars"


class Plugin:
    """`pulumi-resource-envvars` started like the engine starts it, with a connected stub."""

    def __init__(self, stderr_path: Path):
        self.stderr_path = stderr_path
        self.stderr = stderr_path.open("w")
        self.process = subprocess.Popen([str(PLUGIN)], stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def configure(self, url: str, token: str, **extra: Any) -> None:
        """Configure every platform's URL and token settings against one server and user (add-ons such as a
        registrar only when given in `extra`, by wire name)."""
        args = to_struct({**{setting.wire: url if setting.is_url else secret(token) for setting in settings()
                             if not setting.addon}, **extra})
        self.stub.Configure(provider_pb2.ConfigureRequest(args=args, acceptSecrets=True))

    def stderr_text(self) -> str:
        """What the plugin wrote to stderr so far (its warnings, without an engine to send them to)."""
        return self.stderr_path.read_text()

    def close(self) -> None:
        """Stop the plugin."""
        self.channel.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.stderr.close()


@contextlib.contextmanager
def configured(stderr_path: Path, url: str, token: str, **extra: Any) -> Iterator[Plugin]:
    """A plugin configured against one server and user (every platform's settings, and `extra`), stopped after
    the block."""
    plugin = Plugin(stderr_path)
    try:
        plugin.configure(url, token, **extra)
        yield plugin
    finally:
        plugin.close()


def secret(value: Any) -> dict[str, Any]:
    """A value wrapped the way the engine marks secrets."""
    return {SIG_KEY: SECRET_SIG, "value": value}


def urn(token: str, name: str) -> str:
    """A URN for a resource of the test stack."""
    return f"urn:pulumi:test::project::{token}::{name}"


def plain(struct: Any) -> dict[str, Any]:
    """A Struct as a dict, secrets left wrapped."""
    return from_struct(struct)
