"""An offline, faithful double of the organization Usage & Costs API: a pure handler plus a thin server."""

from usageledger.emulator.config import EmulatorConfig, FaultConfig
from usageledger.emulator.handler import Emulator, Request, Response
from usageledger.emulator.server import run_server

__all__ = ["Emulator", "EmulatorConfig", "FaultConfig", "Request", "Response", "run_server"]
