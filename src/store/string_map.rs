//! String maps (metadata, custom headers) as stored in `jsonb` columns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{postgres::PgValueRef, types::Json, Decode, Postgres, Type};

/// A JSON object of strings, sorted by key (answers are stable). Read leniently: a row
/// written by hand with a number or an object in it still answers, each such value shown as
/// its JSON text (the schema refuses such rows from now on; older ones may exist).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StringMap(pub BTreeMap<String, String>);

impl StringMap {
    /// The map of a stored JSON value: strings as they are, anything else as JSON text;
    /// `Err` names the first entry that is not a string (or the value is no object).
    pub fn strict(value: &serde_json::Value) -> Result<StringMap, String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("is {value}, not a JSON object of strings"))?;
        let mut map = BTreeMap::new();
        for (k, v) in object {
            let v = v
                .as_str()
                .ok_or_else(|| format!("has the entry \"{k}\": {v}, which is not a string"))?;
            map.insert(k.clone(), v.to_string());
        }
        Ok(StringMap(map))
    }

    fn lenient(value: serde_json::Value) -> StringMap {
        let serde_json::Value::Object(object) = value else {
            return StringMap::default();
        };
        StringMap(
            object
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
        )
    }
}

impl Type<Postgres> for StringMap {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Json<serde_json::Value> as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for StringMap {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let Json(v) = <Json<serde_json::Value> as Decode<Postgres>>::decode(value)?;
        Ok(StringMap::lenient(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_names_what_is_wrong_and_lenient_still_answers() {
        let good = json!({"a": "1"});
        assert_eq!(StringMap::strict(&good).unwrap().0["a"], "1");
        let bad = json!({"a": 1, "b": "x"});
        assert!(StringMap::strict(&bad).unwrap_err().contains("\"a\""));
        assert!(StringMap::strict(&json!([1])).is_err());
        let shown = StringMap::lenient(bad);
        assert_eq!((shown.0["a"].as_str(), shown.0["b"].as_str()), ("1", "x"));
        assert_eq!(StringMap::lenient(json!("x")), StringMap::default());
    }
}
