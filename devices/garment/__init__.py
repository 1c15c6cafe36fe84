"""The open biogw garment profile: ECG, respiration, temperature and motion over GATT.

``spec`` holds the numbers (UUIDs, stream ids, encodings, rates, codes), ``codec`` the
data frames, ``control`` the control point, ``features`` and ``status`` those values
(``checks`` their shared wire checks), ``profile`` the ``Profile`` the gateway
registers. The byte-level specification is ``docs/garment-profile.md``. Pure: no I/O,
no Bluetooth stack; nothing runs at import.
"""
