"""Polar devices: the Polar Measurement Data (PMD) service and the Polar H10 profile.

``pmd`` owns UUIDs, measurement types and the feature read, ``control`` the control
point (requests, responses), ``settings`` the settings blocks they carry, ``layouts`` the
data-frame layouts, ``frames`` the data-frame decoder, ``encode`` the simulator's
encoder, ``profile`` the H10 profile. Formats follow the public Polar BLE SDK
(github.com/polarofficial/polar-ble-sdk). Pure: no I/O, no Bluetooth stack.
"""

from devices.polar.control import (
    PmdControlRequest,
    PmdControlResponse,
    PmdErrorCode,
    PmdMeasurementStopped,
    PmdOpCode,
    PmdSecurityStrategy,
    PmdSettings,
    PmdSettingType,
    decode_control_point_notification,
    decode_control_request,
    decode_control_response,
    decode_settings,
    encode_control_response,
    encode_get_sdk_mode_settings_request,
    encode_get_settings_request,
    encode_measurement_status_request,
    encode_measurement_stopped,
    encode_settings,
    encode_start_request,
    encode_stop_request,
    factor_bits,
)
from devices.polar.frames import (
    PmdFrame,
    PmdHeader,
    PpiFields,
    encode_pmd_frame,
    parse_pmd_frame,
    read_pmd_header,
    sample_timestamps_ns,
)
from devices.polar.pmd import (
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_SERVICE_UUID,
    MeasurementName,
    PmdMeasurementType,
    decode_pmd_features,
    encode_pmd_features,
)
from devices.polar.profile import (
    H10_ACC_FRAME_TYPE,
    H10_ACC_SAMPLES_PER_FRAME,
    H10_ECG_FRAME_TYPE,
    H10_ECG_SAMPLES_PER_FRAME,
    POLAR_H10_PROFILE,
    PolarH10Decoder,
    PolarH10Profile,
)

__all__ = [
    "H10_ACC_FRAME_TYPE",
    "H10_ACC_SAMPLES_PER_FRAME",
    "H10_ECG_FRAME_TYPE",
    "H10_ECG_SAMPLES_PER_FRAME",
    "PMD_CONTROL_POINT_UUID",
    "PMD_DATA_UUID",
    "PMD_SERVICE_UUID",
    "POLAR_H10_PROFILE",
    "MeasurementName",
    "PmdControlRequest",
    "PmdControlResponse",
    "PmdErrorCode",
    "PmdFrame",
    "PmdHeader",
    "PmdMeasurementStopped",
    "PmdMeasurementType",
    "PmdOpCode",
    "PmdSecurityStrategy",
    "PmdSettingType",
    "PmdSettings",
    "PolarH10Decoder",
    "PolarH10Profile",
    "PpiFields",
    "decode_control_point_notification",
    "decode_control_request",
    "decode_control_response",
    "decode_pmd_features",
    "decode_settings",
    "encode_control_response",
    "encode_get_sdk_mode_settings_request",
    "encode_get_settings_request",
    "encode_measurement_status_request",
    "encode_measurement_stopped",
    "encode_pmd_features",
    "encode_pmd_frame",
    "encode_settings",
    "encode_start_request",
    "encode_stop_request",
    "factor_bits",
    "parse_pmd_frame",
    "read_pmd_header",
    "sample_timestamps_ns",
]
