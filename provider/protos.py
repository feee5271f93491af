"""Pulumi's generated provider protos, loaded without running the `pulumi` package's heavy init.

`import pulumi.runtime.proto...` would first execute `pulumi/__init__.py` (hundreds of ms of the
engine's wait, every time it starts the plugin). The generated modules only need each other,
so they are loaded here as submodules of a bare package that points at the same directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

_PACKAGE = "envvars_provider._pulumi_proto"


def _proto_dir() -> Path:
    spec = importlib.util.find_spec("pulumi")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise ImportError("the pulumi SDK is not installed")
    return Path(spec.origin).parent / "runtime" / "proto"


def _load(name: str) -> types.ModuleType:
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(_proto_dir())]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.{name}")


provider_pb2 = _load("provider_pb2")
provider_pb2_grpc = _load("provider_pb2_grpc")
plugin_pb2 = _load("plugin_pb2")

if TYPE_CHECKING:
    class ResourceProviderServicer:
        """The generated servicer base (every RPC answers UNIMPLEMENTED), typed for subclassing."""
else:
    ResourceProviderServicer = provider_pb2_grpc.ResourceProviderServicer
