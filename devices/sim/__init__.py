"""Simulated garments: bumble GATT peripherals fed by synthetic or recorded signals.

The one part of ``devices`` allowed to use bumble and asyncio; nothing else imports it
except tests, benchmarks and the ``biogw sim`` command.
"""
