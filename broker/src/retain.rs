//! Retained messages, in memory. rmqtt 0.24's `retain` feature is a stub that stores nothing;
//! this enables its own retain tree. Retained topics are derived state: after a restart the
//! processors publish them again from durable history before sensors are let in.

use std::time::Duration;

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

/// The broker's retained-message store.
#[derive(Default)]
pub struct RetainStore {
    inner: DefaultRetainStorage,
}

#[async_trait]
impl RetainStorage for RetainStore {
    fn enable(&self) -> bool {
        true
    }

    async fn set(&self, topic: &TopicName, retain: Retain, expiry: Option<Duration>) -> Result<()> {
        self.inner.set_with_timeout(topic, retain, expiry).await
    }

    async fn get(&self, filter: &TopicFilter) -> Result<Vec<(TopicName, Retain)>> {
        self.inner.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.inner.count().await
    }

    async fn max(&self) -> isize {
        self.inner.max().await
    }
}
