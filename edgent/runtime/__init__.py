"""The co-inference runtime: wire protocol, edge server, device client, bandwidth estimation, per-request records.

Public API::

    from edgent.runtime import DeviceClient, DeviceRuntime, EdgeServer, ServerConfig, BandwidthEstimator, AppLink
"""

from edgent.runtime.bandwidth import BandwidthEstimator, BandwidthSample
from edgent.runtime.client import DeviceClient, EdgeUnavailable, InferenceResult, RemoteError, client_ssl_context
from edgent.runtime.link import AppLink
from edgent.runtime.server import EdgeLoad, EdgeServer, ServerConfig, make_server_ssl_context
from edgent.runtime.session import CoInferenceSession, DeviceRuntime, fixed_plan

__all__ = ["AppLink", "BandwidthEstimator", "BandwidthSample", "CoInferenceSession", "DeviceClient", "DeviceRuntime",
           "EdgeLoad", "EdgeServer", "EdgeUnavailable", "InferenceResult", "RemoteError", "ServerConfig",
           "client_ssl_context", "fixed_plan", "make_server_ssl_context"]
