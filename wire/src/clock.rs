//! The clock timestamps are read from: the system clock, or an accelerated one (the demo's
//! `--speed`), shared by the agents and the server so that "5 minutes ahead" means the same
//! thing on both sides.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

/// A clock running at `speed` simulated seconds per real second from `origin`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    real_origin: Instant,
    sim_origin: DateTime<Utc>,
    speed: f64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::accelerated(Utc::now(), 1.0)
    }

    /// A clock that reads `start` now and runs `speed` times faster than real time.
    /// A speed that is not a positive finite number is taken as 1.
    pub fn accelerated(start: DateTime<Utc>, speed: f64) -> Clock {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Clock {
            real_origin: Instant::now(),
            sim_origin: start,
            speed,
        }
    }

    /// Simulated seconds per real second.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        if self.speed == 1.0 {
            return Utc::now();
        }
        let real = self.real_origin.elapsed().as_secs_f64() * self.speed;
        let micros = (real * 1e6).min(i64::MAX as f64 / 2.0) as i64;
        self.sim_origin + TimeDelta::microseconds(micros)
    }

    /// The real time that `sim` of simulated time takes.
    pub fn real(&self, sim: Duration) -> Duration {
        sim.div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerated_runs_faster() {
        let c = Clock::accelerated("2026-01-01T00:00:00Z".parse().unwrap(), 3600.0);
        std::thread::sleep(Duration::from_millis(20));
        let t = c.now();
        assert!(
            t > "2026-01-01T00:01:00Z".parse::<DateTime<Utc>>().unwrap(),
            "{t}"
        );
        assert_eq!(c.real(Duration::from_secs(3600)), Duration::from_secs(1));
        assert_eq!(Clock::accelerated(Utc::now(), -1.0).speed(), 1.0);
    }
}
