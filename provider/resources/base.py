"""What a resource is: its typed properties (the one source of schema.json) and its CRUD methods.

A resource class declares `inputs` and `outputs` as `Prop`s; the schema, the wire names, secret
wrapping, integer coercion and the generic diff all derive from them. Methods see plain Python
values keyed by snake_case names, with secrets already revealed; the servicer does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from envvars.diff import diff_keys
from envvars_provider.claims import Claim, Others
from envvars_provider.config import Config, Setting
from envvars_provider.names import camel
from envvars_provider.values import UNKNOWN, has_unknown

STRING, BOOLEAN, INTEGER, STRING_MAP, STRING_LIST = "string", "boolean", "integer", "map<string>", "list<string>"


@dataclass(frozen=True)
class Prop:
    """One property of a resource."""

    name: str
    type: str
    description: str
    required: bool = False
    secret: bool = False
    replace_on_change: bool = False
    default: Any = None  # filled in by Check when the program leaves the input unset
    server_default: Any = None  # what the platform uses when the input is unset: equal to unset in a diff

    @property
    def wire(self) -> str:
        """The property's name in the schema and on the wire."""
        return camel(self.name)

    def coerce(self, value: Any) -> Any:
        """A wire value as this property's Python type (Struct numbers arrive as floats)."""
        if self.type == INTEGER and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


@dataclass
class Diff:
    """What changed between a resource's state and its new inputs."""

    changes: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    detailed: dict[str, str] = field(default_factory=dict)  # property path -> add|update|delete[_replace]

    def owe(self, prop: str) -> None:
        """Record a change no input carries (a restart still owed), so that the engine calls Update."""
        self.changes.append(prop)
        self.detailed[prop] = "update"


def map_path(prop: str, key: str) -> str:
    """The property path of one map entry, as the engine reads it: `vars["KEY"]`."""
    return f'{prop}["{key}"]'


class Resource:
    """Base of every resource: a declaration plus CRUD against its platform."""

    token: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[Prop, ...]]
    outputs: ClassVar[tuple[Prop, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()
    """The provider settings this resource uses; Check fails while one with a `label` is unset."""

    def __init__(self, config: Config):
        self.config = config

    @classmethod
    def props(cls) -> tuple[Prop, ...]:
        """Every property of the state: inputs, then output-only ones."""
        return cls.inputs + cls.outputs

    # -- check and diff ---------------------------------------------------------------------

    def check(self, news: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Fill defaults and validate; return the inputs and (property, reason) failures, then the
        settings it needs that are unset. An input left as given is `news`'s own value, never changed in
        place (the servicer then copies it from the request instead of encoding it)."""
        inputs = dict(news)
        failures = []
        for prop in self.inputs:
            if inputs.get(prop.name) is None:
                if prop.default is not None:
                    inputs[prop.name] = prop.default
                elif prop.required:
                    failures.append((prop.name, f"missing required property '{prop.wire}'"))
        unset = [("", setting.unset_reason()) for setting in self.settings
                 if setting.label and not self.config.values.get(setting.name)]
        return inputs, failures + self.validate(inputs) + unset

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        """Resource-specific failures; values may be preview unknowns."""
        return []

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        """What the user should know about acceptable inputs (never a value); shown at preview."""
        return []

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        """The variables this resource would manage, or None when it manages none (or unknown yet)."""
        return None

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """Per-property diff; maps diff per key; unknown new values count as changes."""
        result = Diff()
        for prop in self.inputs:
            old, new = olds.get(prop.name), news.get(prop.name)
            if new is None and prop.default is not None:
                new = prop.default
            if prop.server_default is not None:
                old, new = (prop.server_default if value is None else value for value in (old, new))
            if old == new and not has_unknown(new):
                continue
            kind = "update"
            if prop.type == STRING_MAP and isinstance(old, dict) and isinstance(new, dict):
                keys = diff_keys(old, new)
                entries = {map_path(prop.wire, k): "add" for k in keys.added}
                entries |= {map_path(prop.wire, k): "update" for k in keys.updated}
                entries |= {map_path(prop.wire, k): "delete" for k in keys.deleted}
                if UNKNOWN in new.values():
                    entries |= {map_path(prop.wire, k): "update" for k, v in new.items() if v == UNKNOWN}
                if not entries:
                    continue
            else:
                kind = "add" if old is None else "delete" if new is None else "update"
                entries = {prop.wire: kind}
            if prop.replace_on_change:
                entries = {path: f"{kind}_replace" for path, kind in entries.items()}
                result.replaces.append(prop.wire)
            result.changes.append(prop.wire)
            result.detailed |= entries
        return result

    def preview(self, olds: Mapping[str, Any] | None, news: Mapping[str, Any]) -> dict[str, Any]:
        """Outputs to show in a preview of a create or update: output-only properties unknown."""
        return {**news, **{prop.name: UNKNOWN for prop in self.outputs}}

    # -- CRUD -------------------------------------------------------------------------------

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create the resource; return its id and state."""
        raise NotImplementedError

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        """The resource's current state, or None when it is gone."""
        raise NotImplementedError

    def inputs_from_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs that would produce `state` (for import and refresh)."""
        return {prop.name: state[prop.name] for prop in self.inputs if state.get(prop.name) is not None}

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        """Apply new inputs in place; return the new state. Keys given up that `others` claim stay."""
        raise NotImplementedError

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        """Delete the resource, but no key that `others` claim; one already gone is fine."""
        raise NotImplementedError
