"""`envvars-server`: run the reference server, or create an API token for a user."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from envvars.rules import DEFAULT_MAX_SET_BYTES, DEFAULT_MAX_SET_VARS
from envvars_server.cluster.membership import DEFAULT_NODE_TIMEOUT_S, NodeConfig, read_secret
from envvars_server.limits import DEFAULT_MAX_BODY_BYTES
from envvars_server.machines import DEFAULT_MAX_PER_USER, DEFAULT_MAX_PROCS
from envvars_server.slots import DEFAULT_PER_USER
from envvars_server.store.base import StartRefused


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from envvars.rules import SetLimits
    from envvars_server.app import create_app
    from envvars_server.sandbox import IsolationUnavailable, check_isolation
    from envvars_server.sandbox.host import host, private_mounts
    from envvars_server.slots import UserSlots

    os.umask(0o077)  # whatever the server writes is its user's alone
    private_mounts()  # VM disks mounted by this server vanish with it, even after kill -9
    try:
        check_isolation()
    except IsolationUnavailable as exc:
        print(f"envvars-server: cannot start VMs on this host: {exc}", file=sys.stderr)
        return 2
    print(f"envvars-server: VM isolation: {host().describe()}", file=sys.stderr)
    try:
        node = _node(args)
    except (OSError, ValueError) as exc:
        print(f"envvars-server: cannot join the cluster: {exc}", file=sys.stderr)
        return 2
    if args.faults:
        print("envvars-server: fault injection is on (--faults): for tests only, see POST /_faults",
              file=sys.stderr)
    app = create_app(
        Path(args.data_dir), max_body_bytes=args.max_body_bytes, faults=args.faults,
        set_limits=SetLimits(max_vars=args.max_vars_per_set, max_bytes=args.max_set_bytes),
        vm_slots=UserSlots(per_user=args.vm_ops_per_user), max_workloads_per_user=args.max_workloads_per_user,
        max_procs=args.vm_max_procs, database=args.database, at_rest_key=args.at_rest_key, node=node,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def _node(args: argparse.Namespace) -> NodeConfig | None:
    """This replica's place in a cluster, from the cluster options (all of them, or none: a single server)."""
    given = [args.node_id, args.advertise_url, args.cluster_secret_file]
    if not any(given):
        return None
    if not all(given) or not args.database:
        raise ValueError("a replica needs --node-id, --advertise-url, --cluster-secret-file and --database")
    return NodeConfig(args.node_id, args.advertise_url.rstrip("/"), read_secret(Path(args.cluster_secret_file)),
                      args.node_timeout)


def _token_create(args: argparse.Namespace) -> int:
    from envvars_server.store import open_store

    store = open_store(Path(args.data_dir), args.database)
    try:
        print(store.create_token(args.user))
    finally:
        store.close()
    return 0


def _database_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--database", metavar="URL", default=None,
                         help="the store is on this PostgreSQL database (postgresql://...) instead of the SQLite "
                              "file in --data-dir")


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    root = argparse.ArgumentParser(prog="envvars-server", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--data-dir", required=True, help="directory for the SQLite file and VM roots")
    _database_option(serve)
    serve.add_argument("--at-rest-key", metavar="FILE", type=Path, default=None,
                       help="the 32-byte key sealing values at rest and apps' private keys, made if missing "
                            "(default: at-rest.key in --data-dir); every server on one --database needs the same")
    cluster = serve.add_argument_group(
        "cluster", "run as one of several replicas on one --database: each workload runs on the replica that made "
        "it, and any replica forwards a request for it there")
    cluster.add_argument("--node-id", metavar="ID", help="this replica's name, unique in the cluster and kept "
                         "across its restarts (its workloads are recorded on it)")
    cluster.add_argument("--advertise-url", metavar="URL",
                         help="where the other replicas reach this one (http://host:port)")
    cluster.add_argument("--cluster-secret-file", metavar="PATH",
                         help="a file (mode 0600) holding the secret every replica shares, at least 32 bytes; it "
                              "signs the requests replicas forward to each other")
    cluster.add_argument("--node-timeout", metavar="SECONDS", type=float, default=DEFAULT_NODE_TIMEOUT_S,
                         help="a replica silent this long has its workloads shown dead (default: %(default)s)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                       help="larger request bodies get 413 (default: %(default)s)")
    serve.add_argument("--max-vars-per-set", type=int, default=DEFAULT_MAX_SET_VARS,
                       help="variables one user's set may hold (default: %(default)s)")
    serve.add_argument("--max-set-bytes", type=int, default=DEFAULT_MAX_SET_BYTES,
                       help="UTF-8 bytes of keys and values one set may hold (default: %(default)s)")
    serve.add_argument("--max-workloads-per-user", "--max-vms-per-user", type=int, default=DEFAULT_MAX_PER_USER,
                       help="live workloads (VMs, containers...) one user may have on each platform "
                            "(default: %(default)s)")
    serve.add_argument("--vm-max-procs", type=int, default=DEFAULT_MAX_PROCS,
                       help="processes and threads one VM may run, where the pids cgroup exists (default: %(default)s)")
    serve.add_argument("--vm-ops-per-user", type=int, default=DEFAULT_PER_USER,
                       help="VM operations (boot, exec, commit, files...) one user may have in flight; "
                            "more get 429 (default: %(default)s)")
    serve.add_argument("--faults", action="store_true",
                       help="TEST ONLY: enable fault injection (POST /_faults); never on a real server")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token for a user; printed once")
    create.add_argument("--user", required=True)
    create.add_argument("--data-dir", required=True)
    _database_option(create)
    create.set_defaults(run=_token_create)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `envvars-server` console script."""
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except StartRefused as exc:
        print(f"envvars-server: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
