"""Device layer: profiles, pure decoders bytes -> Frame, and simulated garments.

Everything here except ``devices.sim`` is pure: no asyncio, no Bluetooth stack, no
network or database. ``devices.sim`` is the one place that uses bumble.
"""
