"""The provider's claim registry: conflicts and hand-overs are judged within one scope only."""

from __future__ import annotations

from envvars_provider.claims import Claim, Claims


def test_the_same_key_in_two_scopes_is_no_conflict() -> None:
    claims = Claims()
    assert claims.register("urn::a", Claim("hoody:c1", frozenset({"PORT"}))) == []
    assert claims.register("urn::b", Claim("hoody:c2", frozenset({"PORT"}))) == []
    assert claims.register("urn::c", Claim("hoody:c1", frozenset({"PORT"}))) == [
        "key 'PORT' is also managed by 'a': manage each key in exactly one resource"]


def test_an_exclusive_claim_conflicts_within_its_scope_only() -> None:
    claims = Claims()
    assert claims.register("urn::all", Claim("vers", frozenset({"A"}), exclusive=True)) == []
    assert claims.register("urn::other", Claim("hoody:c1", frozenset({"A"}))) == []
    assert claims.register("urn::one", Claim("vers", frozenset({"B"})))[0].startswith("'all' is exclusive")


def test_held_merges_every_claim_of_the_scope() -> None:
    claims = Claims()
    claims.register("urn::a", Claim("s1", frozenset({"A"})))
    claims.register("urn::b", Claim("s1", frozenset({"B"})))
    claims.register("urn::c", Claim("s2", frozenset({"C"}), exclusive=True))
    with claims.held("s1") as kept:
        assert kept == Claim("s1", frozenset({"A", "B"}))
        assert kept.covers("B") and kept.covers("A") and not kept.covers("C")
    with claims.held("s2") as kept:
        assert kept.covers("anything")
    with claims.held("s3") as kept:
        assert not kept.covers("A")
