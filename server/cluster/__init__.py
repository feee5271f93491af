"""Replicas of the server on one PostgreSQL database (`serve --node-id ... --advertise-url ... --cluster-secret-file`).

Every replica serves every route from the shared store. A workload runs on the node that created it (its record
names the node); a request that acts on a live workload elsewhere is forwarded to that node, signed with the
cluster's shared secret (`signing`, `forwarding`). Nodes beat in the store (`membership`); the workloads of a node
that stopped beating are shown `dead`, and everything else of it (sets, records) stays.
"""

from envvars_server.cluster.membership import Elsewhere, Membership, NodeConfig

__all__ = ["Elsewhere", "Membership", "NodeConfig"]
