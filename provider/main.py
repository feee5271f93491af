"""`pulumi-resource-envvars`: serve the provider over gRPC and print only the port on stdout.

The start path imports only grpc and Pulumi's protos: the engine waits for the port each time it
starts the plugin, so resources, HTTP clients and the schema load on first use.
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent import futures


def main() -> None:
    """Entry point of the plugin executable."""
    import grpc

    from envvars_provider import engine_log
    from envvars_provider.protos import provider_pb2_grpc
    from envvars_provider.server import Provider

    engine_log.engine = engine_log.engine_address(sys.argv[1:])
    verbose = any(arg.startswith("-v=") or arg == "--logtostderr" for arg in sys.argv[1:])
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if verbose else logging.WARNING,
                        format="envvars-provider %(levelname)s %(name)s: %(message)s")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=int(os.environ.get("ENVVARS_PROVIDER_THREADS", 32))),
                         options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)])
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(Provider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:  # the engine stops plugins with SIGINT: a normal end, not a crash
        server.stop(grace=None)


if __name__ == "__main__":
    main()
