//! A progress line for long queries, on standard error, only when it is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a query runs before the progress line appears.
pub const AFTER: Duration = Duration::from_millis(300);

/// The progress line after `elapsed`.
pub fn line(elapsed: Duration) -> String {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let frame = FRAMES[(elapsed.as_millis() / 100 % 4) as usize];
    format!(
        "\r{frame} running query… {:.1} s (Ctrl-C cancels)",
        elapsed.as_secs_f64()
    )
}

/// Runs `work`, showing a progress line on a terminal's standard error while it takes long.
pub async fn with_progress<T>(work: impl std::future::Future<Output = T>) -> T {
    let stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return work.await;
    }
    let start = Instant::now();
    tokio::pin!(work);
    let mut shown = false;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + AFTER,
        Duration::from_millis(100),
    );
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => {
                shown = true;
                let mut e = stderr.lock();
                let _ = write!(e, "{}", line(start.elapsed()));
                let _ = e.flush();
            }
        }
    };
    if shown {
        // Clear the line so the result starts clean.
        let mut e = stderr.lock();
        let _ = write!(e, "\r\x1b[2K");
        let _ = e.flush();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_seconds() {
        let l = line(Duration::from_millis(2_345));
        assert!(l.starts_with('\r'));
        assert!(l.contains("2.3 s"), "{l}");
    }
}
