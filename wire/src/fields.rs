//! A JSON object read as an ordered list of fields, so duplicates are seen (serde_json's maps
//! silently keep the last one) and every type error maps to a [`Reason`].

use chrono::{DateTime, Utc};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::Reason;

pub(crate) struct Fields(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::with_capacity(8);
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Fields {
    /// Parses a payload of at most `max` bytes into fields.
    pub fn parse(payload: &[u8], max: usize) -> Result<Fields, Reason> {
        if payload.len() > max {
            return Err(Reason::TooLarge);
        }
        match serde_json::from_slice::<Fields>(payload) {
            Ok(f) => {
                for (i, (k, _)) in f.0.iter().enumerate() {
                    if f.0[..i].iter().any(|(other, _)| other == k) {
                        return Err(Reason::DuplicateField);
                    }
                }
                Ok(f)
            }
            Err(e) if e.is_data() => Err(Reason::NotObject),
            Err(_) => Err(Reason::NotJson),
        }
    }

    /// Fails with `UnknownField` when a field is not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), Reason> {
        if self.0.iter().all(|(k, _)| allowed.contains(&k.as_str())) {
            Ok(())
        } else {
            Err(Reason::UnknownField)
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    pub fn get(&self, key: &str) -> Result<&Value, Reason> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or(Reason::MissingField)
    }

    pub fn opt(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn str(&self, key: &str) -> Result<&str, Reason> {
        self.get(key)?.as_str().ok_or(Reason::WrongType)
    }

    pub fn id(&self, key: &str) -> Result<String, Reason> {
        let s = self.str(key)?;
        if crate::is_valid_id(s) {
            Ok(s.to_owned())
        } else {
            Err(Reason::BadId)
        }
    }

    /// An integer in `lo..=hi`; a float or a non-number is `WrongType`.
    pub fn int(&self, key: &str, lo: i64, hi: i64) -> Result<i64, Reason> {
        int_value(self.get(key)?, lo, hi)
    }

    pub fn time(&self, key: &str) -> Result<DateTime<Utc>, Reason> {
        parse_utc(self.str(key)?)
    }
}

pub(crate) fn int_value(v: &Value, lo: i64, hi: i64) -> Result<i64, Reason> {
    let Value::Number(n) = v else {
        return Err(Reason::WrongType);
    };
    if let Some(i) = n.as_i64() {
        if (lo..=hi).contains(&i) {
            Ok(i)
        } else {
            Err(Reason::OutOfRange)
        }
    } else if n.as_u64().is_some() {
        Err(Reason::OutOfRange)
    } else {
        Err(Reason::WrongType)
    }
}

/// RFC 3339 with a zero offset (`Z` or `+00:00`); anything else is `BadTime`.
pub(crate) fn parse_utc(s: &str) -> Result<DateTime<Utc>, Reason> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| Reason::BadTime)?;
    if t.offset().local_minus_utc() != 0 {
        return Err(Reason::BadTime);
    }
    Ok(t.with_timezone(&Utc))
}
