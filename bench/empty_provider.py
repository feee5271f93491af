"""The start-up floor of provider_cold_start: grpcio serving an empty `ResourceProvider` servicer.

Started as the plugin is (`python bench/empty_provider.py ENGINE_ADDRESS`), it does only what any
Python gRPC provider must before the engine can call it: import grpcio and Pulumi's generated
provider protos (loaded as the plugin loads them, without the `pulumi` package's init), start a
server, print the port.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc

from envvars_provider.protos import ResourceProviderServicer, provider_pb2_grpc


def main() -> None:
    """Serve every RPC as UNIMPLEMENTED until terminated."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(ResourceProviderServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
