"""The I/O half of biogw: Bluetooth sessions, configuration, command line, transport.

Everything that touches a radio, a socket, a file or a database lives here; it uses the
pure ``devices`` and ``processing`` packages and never the other way round.
"""
