"""The standard Bluetooth SIG Health Thermometer Service: pure decoders and encoders.

``measurement`` owns Temperature Measurement (0x2A1C), the Date Time field and the
IEEE-11073 FLOAT/SFLOAT number formats. No I/O, no Bluetooth stack here.
"""

from devices.hts.measurement import (
    HEALTH_THERMOMETER_SERVICE_UUID,
    INTERMEDIATE_TEMPERATURE_UUID,
    MEASUREMENT_INTERVAL_UUID,
    TEMPERATURE_MEASUREMENT_UUID,
    TEMPERATURE_TYPE_UUID,
    Ieee11073Special,
    TemperatureMeasurement,
    TemperatureType,
    decode_date_time,
    decode_ieee11073_float,
    decode_ieee11073_sfloat,
    decode_temperature_measurement,
    decode_temperature_type,
    encode_date_time,
    encode_ieee11073_float,
    encode_ieee11073_sfloat,
    encode_temperature_measurement,
    ieee11073_float_special,
    ieee11073_sfloat_special,
    temperature_frame,
)

__all__ = [
    "HEALTH_THERMOMETER_SERVICE_UUID",
    "INTERMEDIATE_TEMPERATURE_UUID",
    "MEASUREMENT_INTERVAL_UUID",
    "TEMPERATURE_MEASUREMENT_UUID",
    "TEMPERATURE_TYPE_UUID",
    "Ieee11073Special",
    "TemperatureMeasurement",
    "TemperatureType",
    "decode_date_time",
    "decode_ieee11073_float",
    "decode_ieee11073_sfloat",
    "decode_temperature_measurement",
    "decode_temperature_type",
    "encode_date_time",
    "encode_ieee11073_float",
    "encode_ieee11073_sfloat",
    "encode_temperature_measurement",
    "ieee11073_float_special",
    "ieee11073_sfloat_special",
    "temperature_frame",
]
