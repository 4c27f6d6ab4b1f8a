//! Retention arithmetic: a partition `date=D` holds data of day D (UTC); it is deleted once all
//! of it is older than the retention, so everything from [`cutoff`] on is kept.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// The first date still kept when `retention` is applied at `now`.
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> NaiveDate {
    let keep = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
    now.checked_sub_signed(keep)
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_the_first_day_kept() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let c = cutoff(now, Duration::from_secs(30 * 86400));
        assert_eq!(c, "2026-10-24".parse::<NaiveDate>().unwrap());
        // A retention too long for chrono keeps everything.
        assert_eq!(cutoff(now, Duration::MAX), NaiveDate::MIN);
    }
}
