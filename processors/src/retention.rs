//! Retention: whole day partitions older than the configured retention are deleted, and every
//! deletion is an audit line. A partition `date=D` holds data of day D (UTC); it is deleted once
//! all of it is older than the retention.

use std::path::Path;

use chrono::NaiveDate;

// The cutoff is shared with the query side (which hides expired days before they are deleted).
pub use tellijn_tables::retention::cutoff;

/// Partitions of `table` dated before `cutoff`: (date, path).
pub fn expired(
    data_dir: &Path,
    table: &str,
    cutoff: NaiveDate,
) -> Vec<(NaiveDate, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(table)) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let date: NaiveDate = name.strip_prefix("date=")?.parse().ok()?;
            (date < cutoff).then(|| (date, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    #[test]
    fn cutoff_and_expired_partitions() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let c = cutoff(now, Duration::from_secs(30 * 86400));
        assert_eq!(c, "2026-10-24".parse::<NaiveDate>().unwrap());
        let dir = tempfile::tempdir().unwrap();
        for d in ["2026-10-22", "2026-10-23", "2026-10-24", "2026-11-23"] {
            std::fs::create_dir_all(dir.path().join("counts").join(format!("date={d}"))).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("counts").join("not-a-partition")).unwrap();
        let gone: Vec<String> = expired(dir.path(), "counts", c)
            .iter()
            .map(|(d, _)| d.to_string())
            .collect();
        assert_eq!(gone, ["2026-10-22", "2026-10-23"]);
        assert!(expired(dir.path(), "missing", c).is_empty());
    }
}
