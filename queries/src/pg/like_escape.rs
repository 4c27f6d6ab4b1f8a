//! `LIKE … ESCAPE 'c'` with an escape character other than the backslash, which DataFusion
//! refuses at execution. SQLAlchemy's `inspect()` sends `nspname NOT LIKE 'pg/_' || '%'
//! ESCAPE '/'`; the pattern is often a bound parameter, so the SQL text cannot be rewritten.
//!
//! An analyzer rule rewrites the *plan* instead: `x LIKE p ESCAPE 'c'` becomes
//! `x LIKE tellijn_like_escape(p, 'c')`, whose value is `p` spelt with the backslash as its
//! escape. It runs after parameters are bound, on what the statement does, and reads no table.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{ColumnarValue, Expr, LogicalPlan, ScalarUDF, Volatility, lit};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::{SessionContext, create_udf};

const UDF: &str = "tellijn_like_escape";

/// `pattern` with escape character `esc`, spelt with the backslash as escape instead: `esc c`
/// becomes `\c`, a backslash of its own becomes `\\`. A trailing lone `esc` is an error, as
/// in PostgreSQL.
pub fn respell(pattern: &str, esc: char) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == esc {
            let Some(n) = chars.next() else {
                return Err("LIKE pattern must not end with escape character".to_owned());
            };
            out.push('\\');
            out.push(n);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn udf() -> ScalarUDF {
    create_udf(
        UDF,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let esc = match args.get(1) {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(e)))) => e.chars().next(),
                _ => None,
            }
            .ok_or_else(|| DataFusionError::Plan("ESCAPE needs one character".to_owned()))?;
            let one = |p: &str| respell(p, esc).map_err(DataFusionError::Execution);
            match args.first() {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(p))) => Ok(ColumnarValue::Scalar(
                    ScalarValue::Utf8(p.as_deref().map(one).transpose()?),
                )),
                Some(ColumnarValue::Array(a)) => {
                    let a = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                        DataFusionError::Plan("a LIKE pattern is text".to_owned())
                    })?;
                    let out = a
                        .iter()
                        .map(|p| p.map(one).transpose())
                        .collect::<Result<StringArray>>()?;
                    Ok(ColumnarValue::Array(Arc::new(out)))
                }
                _ => Err(DataFusionError::Plan("a LIKE pattern is text".to_owned())),
            }
        }),
    )
}

/// The rule, see the module's text.
#[derive(Debug)]
pub struct LikeEscape {
    udf: Arc<ScalarUDF>,
}

impl AnalyzerRule for LikeEscape {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // A projection's column keeps the name the statement gave it.
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let t = e.transform_up(|e| match e {
                    Expr::Like(like) if like.escape_char.is_some_and(|c| c != '\\') => {
                        let esc = like.escape_char.unwrap_or('\\');
                        let pattern = self.udf.call(vec![
                            Expr::Cast(datafusion::logical_expr::Cast::new(
                                like.pattern,
                                DataType::Utf8,
                            )),
                            lit(esc.to_string()),
                        ]);
                        Ok(Transformed::yes(Expr::Like(Like {
                            pattern: Box::new(pattern),
                            escape_char: None,
                            ..like
                        })))
                    }
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(t.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tellijn_like_escape"
    }
}

/// Adds the rule (and its function) to `ctx`.
pub fn register(ctx: &SessionContext) {
    let udf = Arc::new(udf());
    ctx.register_udf(udf.as_ref().clone());
    ctx.add_analyzer_rule(Arc::new(LikeEscape { udf }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_are_respelt_with_the_backslash() {
        assert_eq!(respell("pg/_%", '/').unwrap(), "pg\\_%");
        assert_eq!(respell("a\\b", '/').unwrap(), "a\\\\b");
        assert_eq!(respell("//", '/').unwrap(), "\\/");
        assert!(respell("ab/", '/').is_err());
    }

    #[tokio::test]
    async fn like_with_another_escape_answers_as_postgresql() {
        let ctx = SessionContext::new();
        register(&ctx);
        let rows = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&b)
                    .unwrap()
                    .to_string()
            }
        };
        let t = rows(
            "SELECT 'pg_x' LIKE 'pg/_' || '%' ESCAPE '/' AS a, 'pgax' LIKE 'pg/_%' ESCAPE '/' AS b, 'public' NOT LIKE 'pg/_%' ESCAPE '/' AS c",
        )
        .await;
        assert!(t.contains("| true | false | true |"), "{t}");
    }

    proptest! {
        /// Respelt, a pattern matches what it matched with its own escape.
        #[test]
        fn respelling_keeps_what_a_pattern_says(s in "[a-c/%_\\\\]{0,12}") {
            if let Ok(r) = respell(&s, '/') {
                // Every escape in the result is a backslash followed by one character.
                let mut chars = r.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        prop_assert!(chars.next().is_some());
                    }
                }
            } else {
                prop_assert!(s.ends_with('/'));
            }
        }
    }
}
