//! A history table that never shows data past retention: every scan adds `date >= cutoff`
//! (the cutoff computed at scan time), which prunes whole day partitions before any file is
//! read. The server deletes those partitions on a schedule; this closes the window between a
//! day expiring and the next sweep.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, lit};

/// Wraps a hive-partitioned table with a `date` column.
#[derive(Debug)]
pub struct Retained {
    pub inner: Arc<dyn TableProvider>,
    pub retention: Duration,
}

impl Retained {
    fn cutoff(&self) -> String {
        tellijn_tables::retention::cutoff(chrono::Utc::now(), self.retention).to_string()
    }
}

#[async_trait]
impl TableProvider for Retained {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut all = filters.to_vec();
        all.push(col("date").gt_eq(lit(self.cutoff())));
        self.inner.scan(state, projection, &all, limit).await
    }
}
