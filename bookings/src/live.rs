//! Live booking state (being written).
