//! `json`: the payload is a JSON object. The result is a JSON object with the
//! same keys in sorted order, every string value upper-cased, every number
//! doubled, and an extra key `"_fields"` holding the number of top-level keys
//! of the input. The transformation applies recursively to nested arrays and
//! objects. Invalid JSON (or a non-object) is logged and exits with status 1.

use serde_json::{Map, Number, Value};

/// Upper-cases strings and doubles numbers, recursively.
fn transform(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.to_uppercase()),
        Value::Number(n) => Value::Number(double(&n)),
        Value::Array(items) => Value::Array(items.into_iter().map(transform).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, transform(v))).collect())
        }
        other => other,
    }
}

/// Doubles a number, staying an integer when the result fits.
fn double(n: &Number) -> Number {
    if let Some(i) = n.as_i64().and_then(|i| i.checked_mul(2)) {
        Number::from(i)
    } else if let Some(u) = n.as_u64().and_then(|u| u.checked_mul(2)) {
        Number::from(u)
    } else {
        // Doubling a finite f64 can overflow to infinity, which JSON cannot
        // represent: keep the original value in that case.
        Number::from_f64(n.as_f64().unwrap_or(0.0) * 2.0).unwrap_or_else(|| n.clone())
    }
}

fn process(payload: &[u8]) -> Result<Vec<u8>, String> {
    let input: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| format!("json: bad input: {e}"))?;
    let fields = input.len();
    // Without serde_json's `preserve_order` feature a Map is a BTreeMap, so
    // keys come out sorted.
    let Value::Object(mut out) = transform(Value::Object(input)) else {
        unreachable!()
    };
    out.insert("_fields".to_owned(), Value::from(fields));
    let mut bytes = serde_json::to_vec(&out).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn main() {
    wasque_guest::run(|payload| process(&payload));
}

#[cfg(test)]
mod tests {
    #[test]
    fn transforms() {
        let out = super::process(br#"{"b": "hi", "a": 2, "c": [1.5, "x"]}"#).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"_fields\":3,\"a\":4,\"b\":\"HI\",\"c\":[3.0,\"X\"]}\n"
        );
        assert!(super::process(b"[1]").is_err());
        assert!(super::process(b"{").is_err());
    }
}
