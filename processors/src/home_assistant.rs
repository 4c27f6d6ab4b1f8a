//! Home Assistant MQTT discovery: per room an occupancy `binary_sensor` and a people-count
//! `sensor`, retained under `homeassistant/`, so rooms appear with no manual setup.

use tellijn_config::Campus;
use tellijn_wire::topic;

use crate::Output;

/// The discovery messages for every room of `campus`.
pub(crate) fn discovery(campus: &Campus) -> Vec<Output> {
    let mut out = Vec::new();
    for r in &campus.rooms {
        let device = serde_json::json!({
            "identifiers": [format!("tellijn_{}", r.id)],
            "name": r.name,
            "manufacturer": "Tellijn",
            "suggested_area": r.name,
        });
        let occupied = serde_json::json!({
            "name": "Occupied",
            "unique_id": format!("tellijn_{}_occupied", r.id),
            "state_topic": topic::room_state(&r.id),
            "value_template": "{{ value_json }}",
            "payload_on": "occupied",
            "payload_off": "vacant",
            "device_class": "occupancy",
            "device": device,
        });
        let count = serde_json::json!({
            "name": "People",
            "unique_id": format!("tellijn_{}_people", r.id),
            "state_topic": topic::room_occupancy(&r.id),
            "value_template": "{{ value_json.occupancy }}",
            "unit_of_measurement": "people",
            "state_class": "measurement",
            "device": device,
        });
        for (kind, object, cfg) in [
            ("binary_sensor", "occupied", occupied),
            ("sensor", "people", count),
        ] {
            out.push(Output {
                topic: format!("homeassistant/{kind}/tellijn_{}/{object}/config", r.id),
                payload: serde_json::to_vec(&cfg).unwrap_or_default(),
            });
        }
    }
    out
}
