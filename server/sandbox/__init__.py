"""VM sandboxes: a root filesystem per VM and a guest agent reached over a vsock-style socket."""

from envvars_server.sandbox.protocol import AgentClient, AgentUnavailable, ExecResult, GuestError
from envvars_server.sandbox.vm import IsolationUnavailable, Limits, Sandbox, check_isolation

__all__ = [
    "AgentClient", "AgentUnavailable", "ExecResult", "GuestError", "IsolationUnavailable", "Limits", "Sandbox",
    "check_isolation",
]
