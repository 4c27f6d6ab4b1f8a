//! `date_part` (and `extract`, which plans to it) with integer arithmetic for the parts the
//! steward queries group by.
//!
//! Tellijn's timestamps are UTC without a time zone (`Timestamp(Microsecond, None)`).
//! DataFusion's built-in `date_part` turns every value into a chrono date-time to read its hour
//! or weekday; on a year of per-minute occupancy that was 27 % of "utilisation per room and
//! hour of week" (`bench/sql.sh`, `perf record`). For a timestamp without a zone (or in UTC)
//! `hour`, `minute`, `dow` and `isodow` are plain arithmetic on the count since the epoch, so
//! this wrapper computes those four and hands every other part, type and zone to the built-in
//! function unchanged. Its signature, return types, simplification (`preimage`) and
//! documentation are the built-in's; a property test checks both agree on every value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::functions::datetime::date_part::DatePartFunc;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult};
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

/// Plans `extract(part FROM t)` to [`FastDatePart`] (DataFusion's own planner names the
/// built-in `date_part` directly, not through the function registry). Goes before the default
/// planners.
#[derive(Debug, Default)]
pub struct ExtractPlanner;

impl ExprPlanner for ExtractPlanner {
    fn plan_extract(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(FastDatePart::udf()), args),
        )))
    }
}

/// The part a fast path computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Hour,
    Minute,
    /// Day of the week, Sunday 0 … Saturday 6 (PostgreSQL's `dow`).
    Dow,
    /// Day of the week, Monday 1 … Sunday 7 (PostgreSQL's `isodow`).
    IsoDow,
}

impl Part {
    fn parse(part: &str) -> Option<Part> {
        let p = part.trim_matches(|c| c == '\'' || c == '"');
        if p.eq_ignore_ascii_case("hour") {
            Some(Part::Hour)
        } else if p.eq_ignore_ascii_case("minute") {
            Some(Part::Minute)
        } else if p.eq_ignore_ascii_case("dow") {
            Some(Part::Dow)
        } else if p.eq_ignore_ascii_case("isodow") {
            Some(Part::IsoDow)
        } else {
            None
        }
    }

    /// The part of `t`, `per_second` units since 1970-01-01 00:00 UTC.
    #[inline]
    fn of(self, t: i64, per_second: i64) -> i32 {
        let seconds = t.div_euclid(per_second);
        let v = match self {
            Part::Hour => seconds.div_euclid(3600).rem_euclid(24),
            Part::Minute => seconds.div_euclid(60).rem_euclid(60),
            // 1970-01-01 was a Thursday.
            Part::Dow => (seconds.div_euclid(86_400) + 4).rem_euclid(7),
            Part::IsoDow => (seconds.div_euclid(86_400) + 3).rem_euclid(7) + 1,
        };
        v as i32
    }
}

/// The built-in `date_part` with arithmetic for `hour`, `minute`, `dow` and `isodow` of a
/// timestamp in UTC or without a zone.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FastDatePart {
    inner: DatePartFunc,
}

impl FastDatePart {
    pub fn new() -> FastDatePart {
        FastDatePart {
            inner: DatePartFunc::new(),
        }
    }

    /// As a UDF to register in place of the built-in (same name and aliases).
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(FastDatePart::new())
    }
}

impl Default for FastDatePart {
    fn default() -> Self {
        FastDatePart::new()
    }
}

fn utc(tz: &Option<Arc<str>>) -> bool {
    match tz.as_deref() {
        None => true,
        Some(z) => matches!(z, "UTC" | "utc" | "+00:00" | "Z" | "z"),
    }
}

/// The fast result, or `None` where the built-in must answer.
fn fast(args: &ScalarFunctionArgs) -> Option<ArrayRef> {
    if args.return_field.data_type() != &DataType::Int32 {
        return None;
    }
    let [ColumnarValue::Scalar(part), ColumnarValue::Array(array)] = args.args.as_slice() else {
        return None;
    };
    let part = match part {
        ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) => Part::parse(p)?,
        _ => return None,
    };
    let DataType::Timestamp(unit, tz) = array.data_type() else {
        return None;
    };
    if !utc(tz) {
        return None;
    }
    let out: Int32Array = match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .unary(|t| part.of(t, 1)),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .unary(|t| part.of(t, 1_000)),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .unary(|t| part.of(t, 1_000_000)),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|t| part.of(t, 1_000_000_000)),
    };
    Some(Arc::new(out))
}

impl ScalarUDFImpl for FastDatePart {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match fast(&args) {
            Some(a) => Ok(ColumnarValue::Array(a)),
            None => self.inner.invoke_with_args(args),
        }
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;
    use proptest::prelude::*;

    fn call(f: &dyn ScalarUDFImpl, part: &str, values: ArrayRef) -> Result<ArrayRef> {
        let arg_fields = vec![
            Arc::new(Field::new("part", DataType::Utf8, false)),
            Arc::new(Field::new("t", values.data_type().clone(), true)),
        ];
        let part_value = ScalarValue::Utf8(Some(part.to_owned()));
        let return_field = f.return_field_from_args(ReturnFieldArgs {
            arg_fields: &arg_fields,
            scalar_arguments: &[Some(&part_value), None],
        })?;
        let out = f.invoke_with_args(ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(part_value.clone()),
                ColumnarValue::Array(values.clone()),
            ],
            arg_fields,
            number_rows: values.len(),
            return_field,
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.to_array(values.len())
    }

    fn both(part: &str, values: ArrayRef) -> (ArrayRef, ArrayRef) {
        let fast = call(&FastDatePart::new(), part, values.clone()).expect("fast");
        let builtin = call(&DatePartFunc::new(), part, values).expect("built-in");
        (fast, builtin)
    }

    proptest! {
        // Every value the built-in reads (years ±2000 around 1970, before and after the
        // epoch), with nulls, agrees for every fast part, under every spelling.
        #[test]
        fn agrees_with_the_built_in(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, -63_000_000_000_000_000i64..63_000_000_000_000_000),
                1..200,
            ),
            part in prop_oneof![
                Just("hour"), Just("HOUR"), Just("minute"), Just("dow"), Just("isodow"),
                Just("'dow'"), Just("Minute"),
            ],
            zone in prop_oneof![Just(None), Just(Some("UTC")), Just(Some("+00:00"))],
        ) {
            let a = TimestampMicrosecondArray::from(values).with_timezone_opt(zone);
            let (fast, builtin) = both(part, Arc::new(a));
            prop_assert_eq!(fast.as_ref(), builtin.as_ref());
        }
    }

    #[test]
    fn every_unit_and_other_parts_and_zones_answer_as_the_built_in() {
        use arrow::array::{
            TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
        };
        let s = [
            -86_401i64,
            -1,
            0,
            1,
            3599,
            3600,
            1_764_000_000,
            1_800_000_123,
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampSecondArray::from(s.to_vec())),
            Arc::new(TimestampMillisecondArray::from(
                s.iter().map(|v| v * 1_000 + 999).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampNanosecondArray::from(
                s.iter().map(|v| v * 1_000_000_000 - 1).collect::<Vec<_>>(),
            )),
            // A zone that is not UTC goes to the built-in (which converts to local time).
            Arc::new(
                TimestampMicrosecondArray::from(
                    s.iter().map(|v| v * 1_000_000).collect::<Vec<_>>(),
                )
                .with_timezone("Europe/Amsterdam"),
            ),
        ];
        for a in arrays {
            for part in [
                "hour", "minute", "dow", "isodow", "day", "year", "epoch", "second",
            ] {
                let (fast, builtin) = both(part, a.clone());
                assert_eq!(
                    fast.as_ref(),
                    builtin.as_ref(),
                    "{part} of {:?}",
                    a.data_type()
                );
            }
        }
    }

    #[test]
    fn fast_path_is_taken_for_utc_timestamps_only() {
        let micro = |zone: Option<&str>| -> ScalarFunctionArgs {
            let a: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(vec![0i64]).with_timezone_opt(zone));
            ScalarFunctionArgs {
                args: vec![
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some("hour".into()))),
                    ColumnarValue::Array(a.clone()),
                ],
                arg_fields: vec![],
                number_rows: 1,
                return_field: Arc::new(Field::new("date_part", DataType::Int32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            }
        };
        assert!(fast(&micro(None)).is_some());
        assert!(fast(&micro(Some("UTC"))).is_some());
        assert!(fast(&micro(Some("Europe/Amsterdam"))).is_none());
    }
}
