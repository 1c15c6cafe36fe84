"""The standard Bluetooth SIG Heart Rate Service: pure decoders, encoders and profile.

``measurement`` owns the Heart Rate Measurement characteristic (0x2A37) and its frames;
``profile`` owns the generic HR-strap profile. No I/O, no Bluetooth stack here.
"""

from devices.hrs.measurement import (
    ENERGY_SATURATED_KJ,
    HeartRateMeasurement,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
    heart_rate_frames,
    rr_ms_from_units,
    rr_units_from_ms,
)
from devices.hrs.profile import (
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_CONTROL_POINT_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_PROFILE,
    HEART_RATE_SERVICE_UUID,
    BodySensorLocation,
    HeartRateDecoder,
    HeartRateProfile,
    decode_body_sensor_location,
)

__all__ = [
    "BODY_SENSOR_LOCATION_UUID",
    "ENERGY_SATURATED_KJ",
    "HEART_RATE_CONTROL_POINT_UUID",
    "HEART_RATE_MEASUREMENT_UUID",
    "HEART_RATE_PROFILE",
    "HEART_RATE_SERVICE_UUID",
    "BodySensorLocation",
    "HeartRateDecoder",
    "HeartRateMeasurement",
    "HeartRateProfile",
    "decode_body_sensor_location",
    "decode_heart_rate_measurement",
    "encode_heart_rate_measurement",
    "heart_rate_frames",
    "rr_ms_from_units",
    "rr_units_from_ms",
]
