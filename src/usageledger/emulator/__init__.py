"""An offline, faithful double of the organization Usage & Costs API: a pure handler plus a thin server."""

from usageledger.emulator.config import EmulatorConfig, FaultConfig
from usageledger.emulator.handler import Emulator
from usageledger.emulator.messages import Request, Response
from usageledger.emulator.server import run_server
from usageledger.emulator.transport import EmulatorTransport

__all__ = ["Emulator", "EmulatorConfig", "EmulatorTransport", "FaultConfig", "Request", "Response", "run_server"]
