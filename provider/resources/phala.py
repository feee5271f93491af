"""Phala resources: the encrypted environment of a CVM (`CvmEnv`), sealed client-side to its app's key."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

from envvars import sealed_env
from envvars.rules import describe, key_violation, show_key
from envvars.rules.phala import RULES
from envvars_provider import deadline, engine_log
from envvars_provider.claims import Claim, Others
from envvars_provider.clients.phala import Cvm, PhalaClient, RegistrarClient, RegistrationRequired
from envvars_provider.config import Setting, auth_hint
from envvars_provider.errors import PartialApply, ProviderError
from envvars_provider.platform import Platform
from envvars_provider.resources.base import BOOLEAN, STRING, STRING_LIST, STRING_MAP, Diff, Prop, Resource
from envvars_provider.resources.checks import rule_failures
from envvars_provider.values import UNKNOWN

URL = Setting("phala_url", "Base URL of the Phala Cloud API (the provider adds `/api/v1/...`; a URL ending in "
              "`/api/v1` means the same). Falls back to PHALA_CLOUD_API_ENDPOINT.", "PHALA_CLOUD_API_ENDPOINT",
              default="https://cloud-api.phala.com", is_url=True)
API_KEY = Setting("phala_api_key", "API key of the Phala Cloud workspace (a secret, sent as `X-API-Key`). Falls back "
                  "to PHALA_CLOUD_API_KEY.", "PHALA_CLOUD_API_KEY", secret=True, label="Phala API key",
                  placeholder="API_KEY")
REGISTRAR_URL = Setting("phala_registrar_url", "URL of a compose-hash registrar, for CVMs whose KMS is on chain: a "
                        "service that registers a compose hash on the app's contract (`POST` `{app_id, compose_hash}` "
                        "answered by `{transaction_hash}`); the reference server's is "
                        "`/_envvars/v1/chain/compose-hashes`. Unset, a change of a CVM's allowed keys that needs a "
                        "registration fails naming the hash. Falls back to PHALA_REGISTRAR_URL.",
                        "PHALA_REGISTRAR_URL", is_url=True, addon=True)
REGISTRAR_TOKEN = Setting("phala_registrar_token", "Bearer token for the registrar (a secret). Falls back to "
                          "PHALA_REGISTRAR_TOKEN.", "PHALA_REGISTRAR_TOKEN", secret=True, addon=True)
WAIT_S = 600.0  # how long an apply waits for the CVM to run again, unless the resource's customTimeouts say
HASHES = ("compose_hash", "transaction_hash")


def scope(cvm_id: str) -> str:
    """The claims of one CVM: one resource holds its whole set."""
    return f"phala:{cvm_id}"


def sealed_vars(inputs: Mapping[str, Any]) -> dict[str, str]:
    """The variables an apply seals: those of `vars` whose keys are allowed (`envKeys`); the CVM drops the rest."""
    allowed = set(inputs.get("env_keys") or ())
    return {key: value for key, value in (inputs.get("vars") or {}).items() if key in allowed}


class CvmEnv(Resource):
    """The whole encrypted environment of one CVM."""

    token: ClassVar[str] = "envvars:phala:CvmEnv"
    description: ClassVar[str] = (
        "The environment variables of a Phala CVM: the whole set, sealed on this machine to the public key of the "
        "CVM's app (X25519 + AES-256-GCM), so only the CVM can read the values. Every apply replaces the CVM's set "
        "and allowed keys (`allowed_envs`) and restarts it; the provider waits until it runs again (10 minutes, or "
        "the resource's `customTimeouts`). One resource per CVM: it owns the whole set.\n\n"
        "Phala never returns the values, so they live in Pulumi state (as secrets) and diffs compare them with it, "
        "key by key. Refresh checks that the CVM exists and reports keys that are no longer allowed.\n\n"
        "When the CVM's KMS is on chain, changing its allowed keys needs the new compose hash registered on the "
        "app's contract first: the provider does it through the configured registrar "
        "(`envvars:phalaRegistrarUrl`), or fails naming the hash, to be registered by hand and given back as "
        "`composeHash` and `transactionHash`.\n\n"
        "Deleting the resource replaces the set with an empty one and keeps the allowed keys (their names, never "
        "values), so it needs no registration.\n\n"
        "Import with the CVM's id (`pulumi import envvars:phala:CvmEnv NAME CVM_ID`): its allowed keys are adopted, "
        "with no values (Phala never returns them), so the next apply writes every value of the program."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("cvm_id", STRING, "The CVM's id. Changing it replaces the resource: the set is written to the new CVM "
             "and emptied on the old one.", required=True, replace_on_change=True),
        Prop("vars", STRING_MAP, f"The variables, by key: the CVM's whole set. {describe(RULES)} Always stored as "
             "Pulumi secrets.", required=True, secret=True),
        Prop("env_keys", STRING_LIST, "The keys the CVM accepts (its `allowed_envs`), sorted. Default: the keys of "
             "`vars`. A key of `vars` not listed is never sent (the CVM would drop it); a key listed without a "
             "value lets a later apply set it without a new on-chain registration."),
        Prop("compose_hash", STRING, "For a CVM whose KMS is on chain, with no registrar configured: the compose "
             "hash a failed apply named, once registered by hand; give `transactionHash` with it. Used only when "
             "it is the hash the change needs; changing it alone changes nothing."),
        Prop("transaction_hash", STRING, "The hash of the transaction that registered `composeHash`."),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("app_id", STRING, "The id of the CVM's app (the key the set is sealed to, and on-chain, its contract)."),
        Prop("running", BOOLEAN, "Whether the CVM ran with this set when the last apply ended: false when it did "
             "not run again in time, and then the next apply waits for it.", required=True),
    )
    settings: ClassVar[tuple[Setting, ...]] = (URL, API_KEY, REGISTRAR_URL, REGISTRAR_TOKEN)

    @cached_property
    def client(self) -> PhalaClient:
        """The client of the configured API."""
        return PhalaClient(str(self.config.phala_url), self.config.phala_api_key, auth_hint(API_KEY))

    @cached_property
    def registrar(self) -> RegistrarClient | None:
        """The configured registrar, if any."""
        url = self.config.phala_registrar_url
        return RegistrarClient(url, self.config.phala_registrar_token, auth_hint(REGISTRAR_TOKEN, "token")) \
            if url else None

    # -- check and diff ---------------------------------------------------------------------

    def check(self, news: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Fill `envKeys` (sorted, each once) from `vars` when unset, then check."""
        variables, keys = news.get("vars"), news.get("env_keys")
        if isinstance(keys, list) and UNKNOWN not in keys:
            news = {**news, "env_keys": sorted(set(keys))}
        elif keys is None and isinstance(variables, dict):
            news = {**news, "env_keys": sorted(variables)}
        elif keys is None and variables == UNKNOWN:
            news = {**news, "env_keys": UNKNOWN}  # known with the map
        return super().check(news)

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        failures = rule_failures(RULES, "vars", inputs.get("vars"), one_request=False)
        if inputs.get("cvm_id") == "":
            failures.insert(0, ("cvm_id", "cvmId must be a Phala CVM's id"))
        keys = inputs.get("env_keys")
        for key in keys if isinstance(keys, list) else []:
            problem = key_violation(RULES, key) if key != UNKNOWN else None
            if problem is not None:
                failures.append(("env_keys", f"envKeys: {problem.message}"))
        if (inputs.get("compose_hash") is None) != (inputs.get("transaction_hash") is None):
            failures.append(("compose_hash", "composeHash and transactionHash go together: give both (the hash a "
                                             "failed apply named, and the transaction that registered it) or neither"))
        return failures

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        variables, keys = inputs.get("vars"), inputs.get("env_keys")
        if not isinstance(variables, dict) or not isinstance(keys, list) or UNKNOWN in keys:
            return []
        return [f"env var {show_key(key)} is not in envKeys: it is not sent, as the CVM would drop it; add it to "
                "envKeys to deliver it" for key in sorted(variables.keys() - set(keys))]

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        cvm_id = inputs.get("cvm_id")
        if not isinstance(cvm_id, str) or cvm_id == UNKNOWN:
            return None
        return Claim(scope(cvm_id), exclusive=True, conflict=(
            "manages the whole set of its CVM (Phala replaces it on every write) but '{peer}' manages the same CVM: "
            "put all its variables in one CvmEnv"))

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """The per-key diff (a registration's proof alone is no change), plus a wait the last apply did not finish."""
        result = super().diff(olds, {**news, **{name: olds.get(name) for name in HASHES}})
        if olds.get("running") is False:
            result.owe("running")
        return result

    # -- CRUD -------------------------------------------------------------------------------

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        cvm_id = inputs["cvm_id"]
        return cvm_id, self._apply(cvm_id, None, inputs)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        return self._apply(resource_id, olds, news)

    def _cvm(self, cvm_id: str) -> Cvm:
        found = self.client.cvm(cvm_id)
        if found is None:
            raise ProviderError(f"CVM {cvm_id!r} does not exist: check cvmId")
        return found

    def _apply(self, resource_id: str, olds: dict[str, Any] | None, news: dict[str, Any]) -> dict[str, Any]:
        """Seal the set to the CVM's current key and replace the CVM's set with it (registering the compose hash
        first when the allowed keys change on an on-chain KMS), then wait for the CVM to run again. With nothing
        to write (a wait left unfinished), only wait."""
        ends = deadline.ends(WAIT_S)
        cvm_id, env_keys = news["cvm_id"], news["env_keys"]
        unchanged = olds is not None and (sealed_vars(olds), olds.get("env_keys")) == (sealed_vars(news), env_keys)
        cvm = self._cvm(cvm_id)
        if not unchanged:
            body = {"encrypted_env": sealed_env.seal(cvm.pubkey, sealed_vars(news)), "env_keys": env_keys}
            try:
                self.client.update_envs(cvm_id, body, ends)
            except RegistrationRequired as needed:
                self.client.update_envs(cvm_id, {**body, **self._proof(cvm_id, news, needed)}, ends)
        state = {**news, "app_id": cvm.app_id, "running": True}
        return self._running(resource_id, cvm_id, ends, state)

    def _proof(self, cvm_id: str, news: dict[str, Any], needed: RegistrationRequired) -> dict[str, str]:
        """The registration the change needs: the one given by hand when it is that hash, else one made by the
        registrar; without a registrar, an error saying how to make it by hand."""
        given = news.get("compose_hash")
        if isinstance(given, str) and given.lower().removeprefix("0x") == needed.compose_hash.lower():
            return {"compose_hash": needed.compose_hash, "transaction_hash": news["transaction_hash"]}
        if self.registrar is not None:
            try:
                transaction = self.registrar.register(needed.app_id, needed.compose_hash)
            except ProviderError as exc:
                raise ProviderError(f"registering compose hash {needed.compose_hash} for app {needed.app_id} through "
                                    f"the registrar failed, so nothing was changed: {exc}") from None
            return {"compose_hash": needed.compose_hash, "transaction_hash": transaction}
        stale = f" (composeHash {given!r} is not that hash: it was registered for another change)" if given else ""
        chain = f" on chain {needed.chain_id}" if needed.chain_id is not None else " on chain"
        raise ProviderError(
            f"CVM {cvm_id!r} has its KMS{chain}: changing its allowed keys (envKeys) needs compose hash "
            f"{needed.compose_hash} registered for app {needed.app_id} first, and no registrar is configured"
            f"{stale}. Nothing was changed. Register the hash on the app's contract (addComposeHash), then set "
            f'composeHash: "{needed.compose_hash}" and transactionHash: "<the transaction\'s hash>" on this resource '
            "and run `pulumi up` again; or configure a registrar: `pulumi config set envvars:phalaRegistrarUrl URL`")

    def _running(self, resource_id: str, cvm_id: str, ends: float, state: dict[str, Any]) -> dict[str, Any]:
        """`state` once the CVM runs again; a partial apply (stored, not running) when it does not in time."""
        started = time.monotonic()
        try:
            found = self.client.wait_running(cvm_id, ends)
        except ProviderError as exc:
            raise PartialApply(f"the variables are stored but reading CVM {cvm_id!r} failed: {exc}; the next "
                               "`pulumi up` waits for it again", resource_id, {**state, "running": False}) from None
        if found is not None and found.running:
            return state
        how = "is gone" if found is None else f"is {found.status!r}" + (", an update in progress" if found.in_progress
                                                                         else "")
        raise PartialApply(f"the variables are stored but CVM {cvm_id!r} did not run again within "
                           f"{time.monotonic() - started:.0f} s (it {how}); the next `pulumi up` waits for it again "
                           "(set customTimeouts on the resource to wait longer)",
                           resource_id, {**state, "running": False})

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        cvm_id = state.get("cvm_id") or resource_id
        cvm, allowed = self.client.cvm(cvm_id), self.client.allowed_envs(cvm_id)
        if cvm is None or allowed is None:
            return None  # the CVM is gone
        variables, keys = state.get("vars") or {}, state.get("env_keys")
        if not isinstance(keys, list) or set(keys) != set(allowed):
            keys = sorted(set(allowed))
        dropped = sorted(key for key in variables if key in (state.get("env_keys") or ()) and key not in allowed)
        if dropped:
            engine_log.warn(f"CVM {cvm_id!r} no longer allows {', '.join(map(show_key, dropped))} (its allowed_envs "
                            "changed outside this resource): it drops them at its next start; the next `pulumi up` "
                            "allows them again")
        return {**{name: state[name] for name in HASHES if state.get(name)}, "cvm_id": cvm_id, "vars": variables,
                "env_keys": keys, "app_id": cvm.app_id, "running": state.get("running") is not False}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        """Replace the CVM's set with an empty one, keeping its allowed keys (no registration needed), and wait for
        it to run again; unless another resource of the program now holds the CVM (a rename)."""
        ends = deadline.ends(WAIT_S)
        cvm_id = state["cvm_id"]
        with others(scope(cvm_id)) as kept:
            if kept.exclusive:
                return
            cvm = self.client.cvm(cvm_id)
            if cvm is None:
                return  # the CVM is gone, and its variables with it
            self.client.update_envs(cvm_id, {"encrypted_env": sealed_env.seal(cvm.pubkey, {})}, ends)
        found = self.client.wait_running(cvm_id, ends)
        if found is not None and not found.running:
            raise ProviderError(f"the set of CVM {cvm_id!r} is emptied but the CVM did not run again in time (it is "
                                f"{found.status!r})")


PLATFORM = Platform("phala", "Phala", settings=CvmEnv.settings, resources=(CvmEnv,))
