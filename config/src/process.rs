//! Process and disk metrics, read at each scrape: the standard `process_*` names (RSS, CPU,
//! open file descriptors) and the free space of the data directory's file system.

use std::path::PathBuf;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

/// Parses `/proc/self/stat`: (utime + stime ticks, start ticks after boot, vsize, rss pages).
pub fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields from 3 on: utime is 14, stime 15, starttime 22, vsize 23, rss 24.
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((at(14)? + at(15)?, at(22)?, at(23)?, at(24)?))
}

/// Reads this process's statistics (Linux); `None` where `/proc` is not available.
pub fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (cpu_ticks, start_ticks, vsize, rss_pages) = parse_stat(&stat)?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Some(ProcessStats {
        resident_bytes: rss_pages * page,
        virtual_bytes: vsize,
        cpu_seconds: cpu_ticks as f64 / ticks,
        open_fds,
        max_fds,
        start_time_seconds: boot + start_ticks as f64 / ticks,
    })
}

/// Process metrics plus the data directory's disk space, encoded at each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    pub data_dir: PathBuf,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(p) = read_process() {
            let cpu = ConstCounter::new(p.cpu_seconds);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?;
            cpu.encode(m)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes as f64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_bytes as f64,
            )?;
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                p.open_fds as f64,
            )?;
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds as f64,
            )?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                p.start_time_seconds,
            )?;
        }
        if let Ok(s) = rustix::fs::statvfs(&self.data_dir) {
            let block = s.f_frsize;
            gauge(
                &mut encoder,
                "tellijn_data_disk_free_bytes",
                "Bytes available to Tellijn on the data directory's file system",
                (s.f_bavail * block) as f64,
            )?;
            gauge(
                &mut encoder,
                "tellijn_data_disk_size_bytes",
                "Size of the data directory's file system in bytes",
                (s.f_blocks * block) as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (tell ijn (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 4242 123456789 2500 18446744073709551615 0";
        assert_eq!(parse_stat(line), Some((300, 4242, 123_456_789, 2500)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_memory_and_fds() {
        let p = read_process().expect("/proc is readable on Linux");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
