"""Pure signal processing (numpy, scipy): filters, ECG, respiration, temperature, motion.

No I/O, no asyncio, no plotting; streaming state is passed in and returned explicitly.
"""
