"""A simulated knowledge-commerce platform: demo data, benchmark volume and policy-evaluation environments.

Pure logic (NumPy/pandas) plus reading the public text corpora in ``shared/data``; see docs/simulator.md.
"""

from knowcast.sim.config import SimConfig
from knowcast.sim.platform import Platform, simulate_platform
from knowcast.sim.volume import iter_event_frames

__all__ = ["Platform", "SimConfig", "iter_event_frames", "simulate_platform"]
