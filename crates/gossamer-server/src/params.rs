//! Typed access to request fields, with OpenAI-shaped 400s that name the field at fault.
//! A field that is absent or `null` takes its default.

use serde_json::Value;

use crate::error::ApiError;

fn present<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

pub fn opt_bool(body: &Value, key: &str) -> Result<Option<bool>, ApiError> {
    match present(body, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(key, format!("`{key}` must be a boolean"))),
    }
}

/// A number within `[min, max]` (`min_open`: strictly above `min`).
pub fn opt_number(
    body: &Value,
    key: &str,
    min: f64,
    min_open: bool,
    max: f64,
) -> Result<Option<f32>, ApiError> {
    let Some(v) = present(body, key) else {
        return Ok(None);
    };
    let x = v
        .as_f64()
        .ok_or_else(|| ApiError::invalid(key, format!("`{key}` must be a number")))?;
    let above = if min_open { x > min } else { x >= min };
    if !(above && x <= max) {
        let lo = if min_open { "(" } else { "[" };
        return Err(ApiError::invalid(
            key,
            format!("`{key}` must be in {lo}{min}, {max}], got {x}"),
        )
        .with_code("invalid_value"));
    }
    Ok(Some(x as f32))
}

/// An integer within `[min, max]`.
pub fn opt_int(body: &Value, key: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
    let Some(v) = present(body, key) else {
        return Ok(None);
    };
    let x = v
        .as_u64()
        .filter(|x| (min..=max).contains(x))
        .ok_or_else(|| {
            ApiError::invalid(key, format!("`{key}` must be an integer in [{min}, {max}]"))
                .with_code("invalid_value")
        })?;
    Ok(Some(x))
}

pub fn opt_str<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match present(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(key, format!("`{key}` must be a string"))),
    }
}

/// `stop`: a string or up to 4 strings.
pub fn stop_strings(body: &Value) -> Result<Vec<String>, ApiError> {
    match present(body, "stop") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(list)) if list.len() <= 4 => list
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid("stop", "`stop` must hold strings"))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "stop",
            "`stop` must be a string or an array of at most 4 strings",
        )),
    }
}

/// A parameter gossamer does not implement: accepted at its neutral value, refused
/// otherwise, so a client never silently gets something other than what it asked for.
pub fn unsupported_unless(
    body: &Value,
    key: &str,
    neutral: impl Fn(&Value) -> bool,
    why: &str,
) -> Result<(), ApiError> {
    match present(body, key) {
        Some(v) if !neutral(v) => Err(ApiError::invalid(
            key,
            format!("`{key}` is not supported: {why}"),
        )
        .with_code("unsupported_parameter")),
        _ => Ok(()),
    }
}

/// A seed for a request that gave none: different every time, as OpenAI's are.
pub fn fresh_seed() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_and_ranges_name_the_field() {
        let b = json!({"t": "hot", "p": 0.0, "n": -1, "s": 3, "stream": "yes"});
        assert_eq!(
            opt_number(&b, "t", 0.0, false, 2.0)
                .unwrap_err()
                .param
                .as_deref(),
            Some("t")
        );
        assert!(opt_number(&b, "p", 0.0, true, 1.0).is_err());
        assert!(opt_int(&b, "n", 1, 10).is_err());
        assert!(opt_str(&b, "s").is_err());
        assert!(opt_bool(&b, "stream").is_err());
        assert_eq!(opt_number(&b, "absent", 0.0, false, 2.0), Ok(None));
        assert_eq!(
            opt_number(&json!({"t": null}), "t", 0.0, false, 2.0),
            Ok(None)
        );
        assert!(stop_strings(&json!({"stop": ["a", "b", "c", "d", "e"]})).is_err());
        assert_eq!(
            stop_strings(&json!({"stop": "x"})).unwrap(),
            vec!["x".to_string()]
        );
        let n = json!({"n": 2});
        let e = unsupported_unless(&n, "n", |v| v == &json!(1), "one choice only").unwrap_err();
        assert_eq!(e.code, Some("unsupported_parameter"));
        assert!(unsupported_unless(&json!({"n": 1}), "n", |v| v == &json!(1), "").is_ok());
    }
}
