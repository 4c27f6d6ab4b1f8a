//! What the broker hands to the processors, in process: a sensor's admitted messages and its
//! comings and goings. Only messages that passed the gate become events.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::{CountMessage, StatusMessage};

/// One admitted event from a sensor.
#[derive(Debug, Clone)]
pub enum SensorEvent {
    /// A valid count message.
    Count {
        msg: CountMessage,
        /// Server clock at receipt.
        received: DateTime<Utc>,
        /// Monotonic receipt time, for the processing-latency histogram.
        at: Instant,
    },
    /// A valid status message.
    Status {
        sensor: String,
        status: StatusMessage,
    },
    /// The sensor connected (authenticated).
    Connected { sensor: String },
    /// The sensor's connection ended.
    Disconnected { sensor: String },
    /// Not from a sensor: a head count of now set a line-counted room's occupancy to the
    /// number counted (`[bookings] headcount_resets`; audited and stored in `headcounts` with
    /// `reset` true before it is sent).
    SetOccupancy { room: String, people: u32 },
}
