"""Bluetooth Low Energy: bleak sessions and the bumble-backed bleak backend for the
virtual link. The only place in biogw that talks to a Bluetooth stack.
"""
