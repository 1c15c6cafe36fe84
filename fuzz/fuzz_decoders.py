"""Coverage-guided fuzzing (atheris/libFuzzer) of every decoder in ``fuzz.targets``.

The first input byte picks the decoder, the rest is its input. Run for a bounded time:

    python -m fuzz.fuzz_decoders -max_total_time=60 -rss_limit_mb=2048

Exits non-zero (with the crashing input saved as ``crash-*``) when a decoder raises
anything other than the allowed decode errors.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["devices", "gateway.transport"]):
    from fuzz.targets import ALLOWED, targets

TARGETS = list(targets().items())


def one_input(data: bytes) -> None:
    if not data:
        return
    _, decode = TARGETS[data[0] % len(TARGETS)]
    with contextlib.suppress(*ALLOWED):
        decode(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
