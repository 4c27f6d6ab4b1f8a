//! The closed set of reasons a payload or publish is refused.

use std::fmt;

/// Why a publish was refused. The string form is a Prometheus label value and an audit field,
/// so the set is closed and small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not UTF-8 JSON (binary data, an image, truncated text).
    NotJson,
    /// Larger than [`crate::MAX_PAYLOAD`] bytes.
    TooLarge,
    /// JSON, but not an object.
    NotObject,
    /// A field the message kind does not have (or both `line` and `zone`).
    UnknownField,
    /// The same field twice.
    DuplicateField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `v` is not 1.
    BadVersion,
    /// An id is not `[a-z0-9][a-z0-9-]{0,63}`.
    BadId,
    /// `sensor` is not the publishing client, or the topic is another sensor's.
    SensorMismatch,
    /// The line is not one of this sensor's lines in the config.
    UnknownLine,
    /// The zone is not one of this sensor's zones in the config.
    UnknownZone,
    /// A time is not RFC 3339 in UTC.
    BadTime,
    /// `end <= start`, or more than 15 minutes apart.
    BadInterval,
    /// A time more than 5 minutes ahead of the server clock.
    FutureTime,
    /// A number outside its range (counts 0 … 10 000, seq ≥ 1).
    OutOfRange,
    /// The topic is not one this client may publish to.
    BadTopic,
    /// A retained publish where retain is not allowed.
    BadRetain,
}

impl Reason {
    /// Every reason, for tests and for pre-registering metric label values.
    pub const ALL: [Reason; 18] = [
        Reason::NotJson,
        Reason::TooLarge,
        Reason::NotObject,
        Reason::UnknownField,
        Reason::DuplicateField,
        Reason::MissingField,
        Reason::WrongType,
        Reason::BadVersion,
        Reason::BadId,
        Reason::SensorMismatch,
        Reason::UnknownLine,
        Reason::UnknownZone,
        Reason::BadTime,
        Reason::BadInterval,
        Reason::FutureTime,
        Reason::OutOfRange,
        Reason::BadTopic,
        Reason::BadRetain,
    ];

    /// The label used in metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::TooLarge => "too_large",
            Reason::NotObject => "not_object",
            Reason::UnknownField => "unknown_field",
            Reason::DuplicateField => "duplicate_field",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::BadVersion => "bad_version",
            Reason::BadId => "bad_id",
            Reason::SensorMismatch => "sensor_mismatch",
            Reason::UnknownLine => "unknown_line",
            Reason::UnknownZone => "unknown_zone",
            Reason::BadTime => "bad_time",
            Reason::BadInterval => "bad_interval",
            Reason::FutureTime => "future_time",
            Reason::OutOfRange => "out_of_range",
            Reason::BadTopic => "bad_topic",
            Reason::BadRetain => "bad_retain",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Reason {}
