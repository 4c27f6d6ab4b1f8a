//! Whether the server can store what it must: the history (Parquet flushes and the processors'
//! state) and the audit log. A failed write marks its kind failing until the next write of that
//! kind succeeds; `/healthz` answers 503 with the reasons meanwhile, and
//! `tellijn_storage_failing{what}` is 1.
//!
//! Nothing here decides what to do about a failure: the processors keep unwritten messages and
//! ack nothing, a named user's read that cannot be audited is refused. This only says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::WhatLabels;

/// Shared storage health; cloning shares it.
#[derive(Clone, Default)]
pub struct Health {
    /// `tellijn_storage_errors_total{what}`.
    pub errors: Family<WhatLabels, Counter>,
    /// `tellijn_storage_failing{what}`.
    pub failing: Family<WhatLabels, Gauge>,
    /// What is failing now, with the error's sentence.
    now: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Health {
    /// A write of kind `what` (one of [`crate::metrics::storage`]) failed with `message`.
    pub fn failed(&self, what: &'static str, message: &str) {
        self.errors.get_or_create(&WhatLabels { what }).inc();
        self.failing.get_or_create(&WhatLabels { what }).set(1);
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if !now.contains_key(what) {
            tracing::error!(what, "Storage is failing: {message}");
        }
        now.insert(what, message.chars().take(500).collect());
    }

    /// A write of kind `what` succeeded.
    pub fn succeeded(&self, what: &'static str) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if now.remove(what).is_some() {
            self.failing.get_or_create(&WhatLabels { what }).set(0);
            tracing::info!(what, "Storage works again.");
        }
    }

    /// What is failing now: `(what, message)`, empty when all is well.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        now.iter().map(|(w, m)| (*w, m.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::storage;

    #[test]
    fn a_failure_lasts_until_the_next_success() {
        let h = Health::default();
        assert!(h.problems().is_empty());
        h.failed(storage::HISTORY, "No space left on device (os error 28)");
        h.failed(storage::HISTORY, "No space left on device (os error 28)");
        let p = h.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "history");
        assert!(p[0].1.contains("No space left"));
        let what = WhatLabels {
            what: storage::HISTORY,
        };
        assert_eq!(h.errors.get_or_create(&what).get(), 2);
        assert_eq!(h.failing.get_or_create(&what).get(), 1);
        h.succeeded(storage::AUDIT);
        assert_eq!(h.problems().len(), 1);
        h.succeeded(storage::HISTORY);
        assert!(h.problems().is_empty());
        assert_eq!(h.failing.get_or_create(&what).get(), 0);
    }
}
