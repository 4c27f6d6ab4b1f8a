//! Topic names of the contract. All live under `tellijn/v1/`.

/// Prefix of every Tellijn topic.
pub const PREFIX: &str = "tellijn/v1/";

/// The kinds of per-sensor topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorTopic {
    Counts,
    Status,
    Ack,
}

impl SensorTopic {
    fn suffix(self) -> &'static str {
        match self {
            SensorTopic::Counts => "counts",
            SensorTopic::Status => "status",
            SensorTopic::Ack => "ack",
        }
    }
}

/// `tellijn/v1/sensors/{sensor}/{kind}`.
pub fn sensor(sensor: &str, kind: SensorTopic) -> String {
    format!("{PREFIX}sensors/{sensor}/{}", kind.suffix())
}

/// `tellijn/v1/rooms/{room}/occupancy`.
pub fn room_occupancy(room: &str) -> String {
    format!("{PREFIX}rooms/{room}/occupancy")
}

/// `tellijn/v1/rooms/{room}/state`.
pub fn room_state(room: &str) -> String {
    format!("{PREFIX}rooms/{room}/state")
}

/// `tellijn/v1/buildings/{building}/occupancy`.
pub fn building_occupancy(building: &str) -> String {
    format!("{PREFIX}buildings/{building}/occupancy")
}

/// The public tree: what anonymous MQTT clients may read, banded as the anonymous API is.
pub const PUBLIC_TREE: &str = "tellijn/v1/public/#";

/// `tellijn/v1/public/rooms/{room}`: a public room as the anonymous API shows it.
pub fn public_room(room: &str) -> String {
    format!("{PREFIX}public/rooms/{room}")
}

/// `tellijn/v1/public/buildings/{building}`: a building as the anonymous API shows it.
pub fn public_building(building: &str) -> String {
    format!("{PREFIX}public/buildings/{building}")
}

/// Is every topic matched by `filter` also matched by `allowed`? Decided level by level on
/// the topic matching rules (`+` one level, `#` the rest), never on a string prefix.
pub fn filter_within(filter: &str, allowed: &str) -> bool {
    let mut f = filter.split('/');
    let mut a = allowed.split('/');
    loop {
        match (f.next(), a.next()) {
            (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(fl), Some("+")) => {
                if fl == "#" {
                    return false;
                }
            }
            (Some(fl), Some(al)) => {
                if fl != al || fl == "#" || fl == "+" {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Splits `tellijn/v1/sensors/{sensor}/{kind}`; `None` for any other topic.
pub fn parse_sensor(topic: &str) -> Option<(&str, SensorTopic)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("sensors/")?;
    let (id, kind) = rest.split_once('/')?;
    if !crate::is_valid_id(id) {
        return None;
    }
    let kind = match kind {
        "counts" => SensorTopic::Counts,
        "status" => SensorTopic::Status,
        "ack" => SensorTopic::Ack,
        _ => return None,
    };
    Some((id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_topics_round_trip() {
        for k in [SensorTopic::Counts, SensorTopic::Status, SensorTopic::Ack] {
            assert_eq!(parse_sensor(&sensor("lib-1", k)), Some(("lib-1", k)));
        }
        assert_eq!(parse_sensor("tellijn/v1/sensors/lib-1/counts/x"), None);
        assert_eq!(parse_sensor("tellijn/v1/sensors/+/counts"), None);
        assert_eq!(parse_sensor("tellijn/v1/sensors/#"), None);
        assert_eq!(parse_sensor("tellijn/v1/rooms/a/state"), None);
        assert_eq!(parse_sensor("other/sensors/a/counts"), None);
    }

    #[test]
    fn public_topics_lie_in_the_public_tree() {
        assert!(filter_within(&public_room("r1"), PUBLIC_TREE));
        assert!(filter_within(&public_building("b"), PUBLIC_TREE));
        assert!(!filter_within(&room_occupancy("r1"), PUBLIC_TREE));
        assert!(!filter_within("tellijn/v1/+/rooms/#", PUBLIC_TREE));
        assert!(filter_within("tellijn/v1/public/rooms/+", PUBLIC_TREE));
    }
}
