//! What PostgreSQL clients ask of a server before they run the first query of their user:
//! `SELECT version()` in the form their version parsers read (SQLAlchemy's dialect refuses to
//! connect otherwise), `current_setting(name)` for the settings drivers look up, and the
//! `server_version` parameter sent at login and answered to `SHOW server_version`.
//!
//! The version is PostgreSQL's the wire protocol and the catalogue follow (16), with what
//! really answers in parentheses, as distributions do (`16.6 (Debian 16.6-1)`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ParamValues, ScalarValue, ToDFSchema};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, EmptyRelation, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::{SessionContext, create_udf};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::results::{
    DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use datafusion_postgres::pgwire::api::{ClientInfo, Type};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};

/// The PostgreSQL release whose protocol and catalogue Tellijn answers as.
pub const PG_VERSION: &str = "16.6";

/// `server_version` (login parameter, `SHOW server_version`, `current_setting`).
pub fn server_version() -> String {
    format!("{PG_VERSION} (Tellijn {})", env!("CARGO_PKG_VERSION"))
}

/// `SELECT version()`: `PostgreSQL 16.6 (Tellijn 0.1.0 on Apache DataFusion 55.2.0)`.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (Tellijn {} on Apache DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    )
}

/// The settings that are the same in every session, as PostgreSQL spells their values (the
/// only setting a session may change, its time zone, is read from the session: see
/// [`CurrentSetting`]).
pub fn setting(name: &str) -> Option<String> {
    let v = match name.to_ascii_lowercase().as_str() {
        "server_version" => return Some(server_version()),
        "server_version_num" => "160006",
        "search_path" => "public",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "is_superuser" | "in_hot_standby" => "off",
        "default_transaction_read_only" | "transaction_read_only" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "max_identifier_length" => "63",
        "max_index_keys" => "32",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => "C",
        "application_name" => "",
        _ => return None,
    };
    Some(v.to_owned())
}

/// `to_regtype(name)`: the oid of a built-in type by its name or an SQL alias, NULL for any
/// other (psycopg looks up `hstore` this way, through SQLAlchemy, at every first connect).
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let alias = match name {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        other => other,
    };
    (0..10_000u32).find(|&oid| Type::from_oid(oid).is_some_and(|t| t.name() == alias))
}

/// Registers `version()` (replacing DataFusion's own), `current_setting(text)` and
/// `to_regtype(text)`.
pub fn register(ctx: &SessionContext) {
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
    }));
    // No table here has sequences or its own collations (SQLAlchemy's `inspect()` asks).
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
}

/// `json_build_object(k1, v1, …)` as JSON text, for catalogue queries that build one per
/// row (only ever over catalogue values).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object takes pairs of keys and values".to_owned(),
            ));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let text = |a: &ArrayRef| -> Result<serde_json::Value, DataFusionError> {
                    if a.is_null(row) {
                        return Ok(serde_json::Value::Null);
                    }
                    Ok(match ScalarValue::try_from_array(a, row)? {
                        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
                        v @ (ScalarValue::Int8(_)
                        | ScalarValue::Int16(_)
                        | ScalarValue::Int32(_)
                        | ScalarValue::Int64(_)
                        | ScalarValue::UInt32(_)
                        | ScalarValue::UInt64(_)) => serde_json::Value::from(
                            v.to_string().parse::<i64>().unwrap_or_default(),
                        ),
                        v => serde_json::Value::String(v.to_string()),
                    })
                };
                let key = match text(&pair[0])? {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(key, text(&pair[1])?);
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

fn to_regtype(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let oid = |n: Option<&str>| n.and_then(type_oid).and_then(|o| i32::try_from(o).ok());
    match args {
        [
            ColumnarValue::Scalar(
                ScalarValue::Utf8(n) | ScalarValue::LargeUtf8(n) | ScalarValue::Utf8View(n),
            ),
        ] => Ok(ColumnarValue::Scalar(ScalarValue::Int32(oid(n.as_deref())))),
        [ColumnarValue::Array(a)] => {
            let names = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                DataFusionError::Plan("to_regtype takes a type's name as text".to_owned())
            })?;
            Ok(ColumnarValue::Array(Arc::new(
                names
                    .iter()
                    .map(oid)
                    .collect::<datafusion::arrow::array::Int32Array>(),
            )))
        }
        _ => Err(DataFusionError::Plan(
            "to_regtype takes one argument, a type's name as text".to_owned(),
        )),
    }
}

/// `current_setting(name)`: [`setting`], and `TimeZone` as the session set it (UTC unless).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        let tz = args
            .config_options
            .execution
            .time_zone
            .clone()
            .unwrap_or_else(|| "UTC".to_owned());
        current_setting(&args.args, &tz)
    }
}

fn current_setting(args: &[ColumnarValue], tz: &str) -> Result<ColumnarValue, DataFusionError> {
    let setting = |n: &str| {
        if n.eq_ignore_ascii_case("timezone") {
            Some(tz.to_owned())
        } else {
            setting(n)
        }
    };
    let unknown = |name: &str| {
        DataFusionError::Plan(format!(
            "unrecognized configuration parameter \"{name}\" (Tellijn answers server_version, search_path, TimeZone, client_encoding, transaction_isolation and the other settings drivers ask for at connect)"
        ))
    };
    let [arg] = args else {
        return Err(DataFusionError::Plan(
            "current_setting takes one argument, the setting's name".to_owned(),
        ));
    };
    match arg {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(n) | ScalarValue::LargeUtf8(n) | ScalarValue::Utf8View(n) => {
                match n {
                    None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
                    Some(n) => setting(n)
                        .map(|v| ColumnarValue::Scalar(ScalarValue::Utf8(Some(v))))
                        .ok_or_else(|| unknown(n)),
                }
            }
            other => Err(DataFusionError::Plan(format!(
                "current_setting takes a setting's name as text, not {}",
                other.data_type()
            ))),
        },
        ColumnarValue::Array(a) => {
            let names = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                DataFusionError::Plan("current_setting takes a setting's name as text".to_owned())
            })?;
            let mut out = Vec::with_capacity(names.len());
            for n in names.iter() {
                out.push(match n {
                    None => None,
                    Some(n) => Some(setting(n).ok_or_else(|| unknown(n))?),
                });
            }
            Ok(ColumnarValue::Array(
                Arc::new(StringArray::from(out)) as ArrayRef
            ))
        }
    }
}

/// Answers `SHOW name` for the settings of [`setting`] (before the library's `SET`/`SHOW`
/// hook, which names DataFusion as the `server_version` and `read uncommitted` as the
/// isolation); every other `SHOW` goes on to it. Also answers `SAVEPOINT`, `RELEASE` and
/// `ROLLBACK TO SAVEPOINT`, which drivers send around their own lookups (psycopg's type info
/// inside SQLAlchemy's transaction): with nothing writable, each is a no-op that leaves the
/// transaction open, as in PostgreSQL.
#[derive(Debug)]
pub struct ShowSettingHook;

fn shown(statement: &Statement) -> Option<(String, String)> {
    let Statement::ShowVariable { variable } = statement else {
        return None;
    };
    let [name] = variable.as_slice() else {
        return None;
    };
    setting(&name.value).map(|v| (name.value.to_ascii_lowercase(), v))
}

fn show_response(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_owned(),
        None,
        None,
        Type::VARCHAR,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(futures::stream::once(async move { Ok(row) })),
    )))
}

/// The tag of a savepoint statement, if `statement` is one.
fn savepoint_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Savepoint { .. } => Some("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Some("ROLLBACK"),
        _ => None,
    }
}

fn answer(statement: &Statement) -> Option<PgWireResult<Response>> {
    if let Some(tag) = savepoint_tag(statement) {
        return Some(Ok(Response::Execution(Tag::new(tag))));
    }
    let (name, value) = shown(statement)?;
    Some(show_response(&name, &value))
}

#[async_trait]
impl QueryHook for ShowSettingHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        answer(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if savepoint_tag(statement).is_some() {
            return Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            })));
        }
        let (name, _) = shown(statement)?;
        Some(
            Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
                .to_dfschema()
                .map(|schema| {
                    LogicalPlan::EmptyRelation(EmptyRelation {
                        produce_one_row: true,
                        schema: Arc::new(schema),
                    })
                })
                .map_err(|e| PgWireError::ApiError(Box::new(e))),
        )
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        answer(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_one_postgresql_clients_parse() {
        // SQLAlchemy's dialect: r".*(?:PostgreSQL|EnterpriseDB) (\d+)\.?(\d+)?(?:\.(\d+))?".
        let v = version_string();
        let rest = v.strip_prefix("PostgreSQL ").unwrap();
        let (major, rest) = rest.split_once('.').unwrap();
        assert_eq!(major.parse::<u32>().unwrap(), 16);
        assert!(rest.starts_with(|c: char| c.is_ascii_digit()));
        assert!(v.contains("Tellijn") && v.contains("DataFusion"));
        assert!(server_version().starts_with("16.6 ("));
    }

    #[test]
    fn settings_are_case_insensitive_and_unknown_ones_are_refused() {
        assert_eq!(setting("Search_Path").as_deref(), Some("public"));
        // A session's own: read from it, never answered as fixed.
        assert_eq!(setting("TimeZone"), None);
        assert_eq!(setting("search_path").as_deref(), Some("public"));
        assert_eq!(setting("is_superuser").as_deref(), Some("off"));
        assert_eq!(setting("data_directory"), None);
        assert_eq!(setting("password_encryption"), None);
    }

    #[test]
    fn types_resolve_by_name_and_alias_and_others_are_null() {
        assert_eq!(type_oid("int4"), Some(23));
        assert_eq!(type_oid("INTEGER"), Some(23));
        assert_eq!(type_oid("pg_catalog.timestamptz"), Some(1184));
        assert_eq!(type_oid("double precision"), Some(701));
        assert_eq!(type_oid("hstore"), None);
        assert_eq!(type_oid(""), None);
    }
}
