//! Room state for HVAC and lighting: `occupied` at the first person, `vacant` only after the
//! room has stood at zero for its `vacancy_delay` (hysteresis: one miscount does not switch the
//! heating off). Timed on tokio's clock, so tests run it with paused time.

use std::time::Duration;

use tokio::time::Instant;

/// The vacancy state machine of one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacancy {
    occupied: bool,
    zero_since: Option<Instant>,
}

impl Vacancy {
    /// Starts in the state the count implies (after a restart there is no history to wait for).
    pub fn new(people: u64) -> Vacancy {
        Vacancy {
            occupied: people > 0,
            zero_since: None,
        }
    }

    /// Feeds the current count at `now`; returns whether the room counts as occupied.
    pub fn update(&mut self, people: u64, now: Instant, delay: Duration) -> bool {
        if people > 0 {
            self.occupied = true;
            self.zero_since = None;
        } else if self.occupied {
            let since = *self.zero_since.get_or_insert(now);
            if now.duration_since(since) >= delay {
                self.occupied = false;
                self.zero_since = None;
            }
        }
        self.occupied
    }

    /// Is a switch to vacant pending (so the room must be looked at again later)?
    pub fn pending(&self) -> bool {
        self.zero_since.is_some()
    }

    /// The topic payload: `"occupied"` or `"vacant"` (JSON strings).
    pub fn payload(&self) -> &'static [u8] {
        if self.occupied {
            b"\"occupied\""
        } else {
            b"\"vacant\""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_miscount_does_not_flap_a_departure_does_after_the_delay() {
        let delay = Duration::from_secs(600);
        let mut v = Vacancy::new(0);
        assert!(!v.update(0, Instant::now(), delay));
        assert!(
            v.update(1, Instant::now(), delay),
            "occupied at the first person"
        );
        // A single miscount: zero for a minute, then back.
        assert!(v.update(0, Instant::now(), delay));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(v.update(1, Instant::now(), delay));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(v.update(1, Instant::now(), delay));
        // A real departure: vacant exactly after the delay, not before.
        assert!(v.update(0, Instant::now(), delay));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(v.update(0, Instant::now(), delay));
        assert!(v.pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!v.update(0, Instant::now(), delay));
        assert_eq!(v.payload(), b"\"vacant\"");
    }
}
