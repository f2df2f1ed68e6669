"""Samplers the models package implements itself: Open-Sora 1.2's rectified flow."""

from .rectified_flow import RectifiedFlow, VelocityFn, timestep_shift

__all__ = ["RectifiedFlow", "VelocityFn", "timestep_shift"]
