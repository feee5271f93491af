"""The ResourceProvider gRPC servicer: dispatch by type token; secrets, unknowns and errors in one place."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import grpc
from google.protobuf import empty_pb2, struct_pb2

from envvars_provider import VERSION, deadline, engine_log
from envvars_provider import config as provider_config
from envvars_provider.claims import Claims
from envvars_provider.errors import PartialApply, ProviderError
from envvars_provider.names import camel, snake
from envvars_provider.protos import ResourceProviderServicer, plugin_pb2, provider_pb2
from envvars_provider.resources.base import Resource
from envvars_provider.values import (
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    fill_struct,
    from_struct,
    reveal,
    revealed,
    secret,
    unwrapped,
)

log = logging.getLogger("envvars.provider")
T = TypeVar("T")

DIFF_KINDS = {
    "add": provider_pb2.PropertyDiff.ADD, "add_replace": provider_pb2.PropertyDiff.ADD_REPLACE,
    "update": provider_pb2.PropertyDiff.UPDATE, "update_replace": provider_pb2.PropertyDiff.UPDATE_REPLACE,
    "delete": provider_pb2.PropertyDiff.DELETE, "delete_replace": provider_pb2.PropertyDiff.DELETE_REPLACE,
}


def _resource_types() -> dict[str, type[Resource]]:
    from envvars_provider.registry import RESOURCES

    return {resource.token: resource for resource in RESOURCES}


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Decoded(NamedTuple):
    """A request's properties: plain values by snake_case name, the names that arrived secret, and the Value on
    the wire of each plain value that holds no secret (`Properties.encode` copies it instead of building it)."""

    values: dict[str, Any]
    secrets: set[str]
    wire: dict[str, struct_pb2.Value]


class Properties:
    """Wire ↔ Python for one resource type: camelCase ↔ snake_case, secrets, integer coercion."""

    def __init__(self, resource: type[Resource]):
        self.by_wire = {prop.wire: prop for prop in resource.props()}
        self.by_name = {prop.name: prop for prop in resource.props()}

    def decode(self, struct: struct_pb2.Struct | None) -> Decoded:
        """The properties of a request's Struct, secrets revealed."""
        decoded = Decoded({}, set(), {})
        if struct is None:
            return decoded
        for wire, raw in struct.fields.items():
            prop = self.by_wire.get(wire)
            if prop is None:
                continue
            inner, wrapped = unwrapped(raw)
            plain, nested = (None, False) if inner is None else revealed(inner)
            decoded.values[prop.name] = prop.coerce(plain)
            if wrapped or nested:
                decoded.secrets.add(prop.name)
            if inner is not None and not nested:
                decoded.wire[prop.name] = inner
        return decoded

    def read_back(self, values: dict[str, Any]) -> dict[str, Any]:
        """What `decode` gives for `values` once encoded (secrets revealed): the declared properties that are set."""
        return {name: value for name, value in values.items() if value is not None and name in self.by_name}

    def failure_property(self, name: str, secrets: set[str]) -> str:
        """The property a Check failure names: none for a secret, as the engine prints the named one's value."""
        prop = self.by_name.get(name)
        return "" if prop is None or prop.secret or name in secrets else prop.wire

    def encode(self, values: dict[str, Any], secrets: set[str], into: struct_pb2.Struct | None = None,
               given: Decoded | None = None) -> struct_pb2.Struct:
        """A Struct with every secret property wrapped, declared secret or passed as one; written `into` a
        response's field if one is passed (a response built around a finished Struct copies it, all of it).

        A value that is still the very object decoded as `given` is copied from its Value in the request, in C,
        instead of being built again: Check returns the program's inputs mostly as they came.
        """
        wire = {}
        copied = []
        for name, value in values.items():
            prop = self.by_name.get(name)
            if prop is None or value is None:
                continue
            wrap = (prop.secret or name in secrets) and value != UNKNOWN
            source = given.wire.get(name) if given is not None and given.values.get(name) is value else None
            if source is not None:
                copied.append((prop.wire, source, wrap))
            else:
                wire[prop.wire] = secret(value) if wrap else value
        struct = struct_pb2.Struct() if into is None else into
        struct.SetInParent()
        fill_struct(struct, wire)
        for key, source, wrap in copied:
            target = struct.fields[key]
            if wrap:
                target.struct_value.fields[SIG_KEY].string_value = SECRET_SIG
                target = target.struct_value.fields["value"]
            target.CopyFrom(source)
        return struct


class Provider(ResourceProviderServicer):
    """The envvars provider: one per engine connection (one account per provider configuration)."""

    def __init__(self) -> None:
        self._config: provider_config.Config | None = None
        self._types: dict[str, type[Resource]] | None = None
        self._handlers: dict[str, tuple[Resource, Properties]] = {}
        self._claims = Claims()
        self._lock = threading.Lock()
        # The inputs Check last returned for each URN, on the wire and as `decode` reads them back: the engine
        # passes them to Diff, which takes them from here instead of decoding them again (and drops them).
        self._checked: dict[str, tuple[struct_pb2.Struct, dict[str, Any]]] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _handler(self, token: str) -> tuple[Resource, Properties]:
        """The resource for a type token and its wire mapping, made once per token."""
        with self._lock:
            if token not in self._handlers:
                if self._types is None:
                    self._types = _resource_types()
                resource = self._types.get(token)
                if resource is None:
                    raise ProviderError(f"unknown resource type {token!r}")
                config = self._config or provider_config.resolve({})
                self._handlers[token] = (resource(config), Properties(resource))
            return self._handlers[token]

    @staticmethod
    def _guard(
        context: grpc.ServicerContext, what: str, call: Callable[[], T],
        props: Properties | None = None, secrets: set[str] | None = None, timeout: float = 0.0,
    ) -> T:
        """Run an operation within the engine's `timeout` (seconds, 0 for none); report provider errors to the
        engine as one clear message.

        A partial apply also carries the state reached, so the engine records the resource and
        the next `pulumi up` finishes the job instead of leaving an orphan.
        """
        try:
            with deadline.within(timeout):
                return call()
        except PartialApply as exc:
            from google.protobuf import any_pb2
            from google.rpc import code_pb2, status_pb2
            from grpc_status import rpc_status

            if props is None:
                raise AssertionError("partial apply from an operation without state") from exc
            state = props.encode(exc.outputs, secrets or set())
            failed = provider_pb2.ErrorResourceInitFailed(
                id=exc.resource_id, properties=state, reasons=[f"{what}: {exc}"])
            detail = any_pb2.Any()
            detail.Pack(failed)
            status = status_pb2.Status(code=code_pb2.UNKNOWN, message=f"{what}: {exc}", details=[detail])
            context.abort_with_status(rpc_status.to_status(status))
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"{what}: {exc}")
        raise AssertionError("unreachable")

    # -- handshake, config, schema ----------------------------------------------------------

    def Handshake(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True, accept_resources=True)

    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        from envvars_provider.schema import render

        return provider_pb2.GetSchemaResponse(schema=render())

    def CheckConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        given = self._config_values(request.news)
        failures = [provider_pb2.CheckFailure(property=camel(name), reason=reason)
                    for name, reason in provider_config.check(given)]
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    def DiffConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        old, new = self._config_values(request.olds), self._config_values(request.news)
        changed = sorted(camel(name) for name in old.keys() | new.keys() if old.get(name) != new.get(name))
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
        )

    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.HasField("args"):
            given = self._config_values(request.args)
        else:  # older engines: {"envvars:config:versUrl": "..."}
            given = {snake(key.rsplit(":", 1)[-1]): value for key, value in request.variables.items()}
        self._config = self._guard(context, "configuring envvars", lambda: provider_config.resolve(given))
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=True)

    @staticmethod
    def _config_values(struct: struct_pb2.Struct) -> dict[str, Any]:
        values, _ = reveal(from_struct(struct))
        return {snake(key): value for key, value in values.items() if value != UNKNOWN}

    # -- resources --------------------------------------------------------------------------

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        given = props.decode(request.news)
        inputs, failures = resource.check(given.values)
        claim = resource.claim(inputs)
        if claim is not None:
            failures += [("vars", reason) for reason in self._claims.register(request.urn, claim)]
        if not failures:
            for warning in resource.warnings(inputs):
                engine_log.warn(f"{request.type} resource '{_name(request.urn)}': {warning}", request.urn)
        response = provider_pb2.CheckResponse(
            failures=[provider_pb2.CheckFailure(property=props.failure_property(p, given.secrets), reason=reason)
                      for p, reason in failures],
        )
        props.encode(inputs, given.secrets, into=response.inputs, given=given)
        self._checked[request.urn] = (response.inputs, props.read_back(inputs))
        return response

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        olds, news = props.decode(request.olds).values, self._checked_news(request, props)
        what = f"diffing {request.type} '{_name(request.urn)}'"
        result = self._guard(context, what, lambda: resource.diff(olds, news))  # may read the platform
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if result.changes else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=result.changes,
            replaces=result.replaces,
            detailedDiff={path: provider_pb2.PropertyDiff(kind=DIFF_KINDS[kind], inputDiff=True)
                          for path, kind in result.detailed.items()},
            hasDetailedDiff=True,
        )

    def _checked_news(self, request: Any, props: Properties) -> dict[str, Any]:
        """A Diff's new inputs: those Check returned for the resource when they come back unchanged (as the
        engine sends them), else decoded."""
        checked = self._checked.pop(request.urn, None)
        if checked is not None and checked[0] == request.news:
            return checked[1]
        return props.decode(request.news).values

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        self._checked.pop(request.urn, None)  # a new resource has no Diff to take back what Check returned
        inputs, secrets, _ = props.decode(request.properties)
        what = f"creating {request.type} '{_name(request.urn)}'"
        if request.preview:
            preview = self._guard(context, what, lambda: resource.preview(None, inputs))
            response = provider_pb2.CreateResponse()
            props.encode(preview, secrets, into=response.properties)
            return response
        resource_id, state = self._guard(context, what, lambda: resource.create(inputs), props, secrets,
                                         request.timeout)
        response = provider_pb2.CreateResponse(id=resource_id)
        props.encode(state, secrets, into=response.properties)
        return response

    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        state, secrets, _ = props.decode(request.properties)
        what = f"reading {request.type} '{_name(request.urn)}'"
        current = self._guard(context, what, lambda: resource.read(request.id, state))
        if current is None:
            return provider_pb2.ReadResponse()  # gone: the engine drops it and a later up recreates it
        response = provider_pb2.ReadResponse(id=request.id)
        props.encode(current, secrets, into=response.properties)
        props.encode(resource.inputs_from_state(current), secrets, into=response.inputs)
        return response

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        olds = props.decode(request.olds).values
        news, secrets, _ = props.decode(request.news)
        what = f"updating {request.type} '{_name(request.urn)}'"
        if request.preview:
            preview = self._guard(context, what, lambda: resource.preview(olds, news))
            response = provider_pb2.UpdateResponse()
            props.encode(preview, secrets, into=response.properties)
            return response
        others = self._claims.held
        state = self._guard(context, what, lambda: resource.update(request.id, olds, news, others), props,
                            secrets, request.timeout)
        response = provider_pb2.UpdateResponse()
        props.encode(state, secrets, into=response.properties)
        return response

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        resource, props = self._handler(request.type)
        state = props.decode(request.properties).values
        what = f"deleting {request.type} '{_name(request.urn)}'"
        others = self._claims.held
        self._guard(context, what, lambda: resource.delete(request.id, state, others), timeout=request.timeout)
        return empty_pb2.Empty()

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def Attach(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def GetMapping(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.GetMappingResponse(provider="", data=b"")

    def GetMappings(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.GetMappingsResponse(providers=[])
