//! Reading an OTLP attribute whatever type its exporter sent it in: Claude Code's sends the same
//! number as `intValue`, `doubleValue` or a numeric `stringValue`, and booleans as
//! `"true"`/`"false"` strings (`claude-code-otel.md` §5.3); Codex CLI's writes nearly every
//! number and boolean as text (`other-agents-telemetry.md` §2.2). Every read of a record goes
//! through these.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// A text attribute; numbers and booleans are written out, empty text is absent.
pub(crate) fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    text(value(attributes, key)?)
}

/// A text attribute of the record, else of its resource (where exporters put what every
/// record of a process shares: the session, the person).
pub(crate) fn record_or_resource(
    attributes: &[KeyValue],
    resource: &[KeyValue],
    key: &str,
) -> Option<String> {
    string(attributes, key).or_else(|| string(resource, key))
}

/// A value as text: numbers and booleans written out, empty text absent.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number sent as an int, a double or a numeric string.
pub(crate) fn number(attributes: &[KeyValue], key: &str) -> Option<f64> {
    raw_number(attributes, key).filter(|n: &f64| n.is_finite())
}

/// As [`number`], keeping NaN and infinities (for the bounds to reject).
pub(crate) fn raw_number(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match value(attributes, key)? {
        Value::DoubleValue(d) => Some(*d),
        Value::IntValue(i) => Some(*i as f64),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A whole number sent as an int, a double (rounded) or a numeric string.
pub(crate) fn integer(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key)? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| number(attributes, key).map(|n| n.round() as i64)),
        _ => number(attributes, key).map(|n| n.round() as i64),
    }
}

/// A boolean sent as a bool or as `"true"`/`"false"`.
pub(crate) fn boolean(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match value(attributes, key)? {
        Value::BoolValue(b) => Some(*b),
        Value::StringValue(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::StringValue(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}
