//! Counter.
