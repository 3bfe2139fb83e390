//! Counting an export before it is decoded: the bound on what decoding may build.
//!
//! A size limit checks bytes, but the damage is done by the decoded structs: an empty log
//! record is two bytes of protobuf (or `{},` in JSON) and some two hundred bytes once decoded,
//! so a 16 KB gzip body that inflates to 16 MiB of empty records once took the server to
//! 9.4 GB. Here an export's wire bytes are walked once, without building anything, along the
//! OTLP schema, counting what decoding would make: entries (resource, scope and metric
//! entries), records (log records, data points, spans and what hangs off them: span events,
//! links, exemplars, quantiles) and attribute values (key-value pairs, the values in arrays,
//! bucket counts, entity keys). The walk stops at the first count past its bound, so an
//! export that would inflate is refused after reading only as far as the bound. Only then is
//! it decoded by `opentelemetry-proto`'s types.
//!
//! The walk follows protobuf's wire format and the OTLP JSON mapping (camelCase keys) for the
//! fields that repeat or nest; every other field is skipped. Bytes that are not OTLP are
//! left for the decoder to refuse with its own reason: the walk only ever counts.

use std::fmt;

use super::Signal;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The most of each kind one export may hold. Claude Code's exporters batch 512 records of
/// about 20 attributes; an OpenTelemetry Collector in front batches 8,192 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Log records, data points and spans (and their span events, links, exemplars and
    /// quantiles).
    pub max_records: usize,
    /// Resource, scope and metric entries.
    pub max_entries: usize,
    /// Attributes: key-value pairs anywhere, the values nested in them, bucket counts.
    pub max_attributes: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_records: 32_768,
            max_entries: 8_192,
            max_attributes: 524_288,
        }
    }
}

/// The kinds counted, each with its own bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Entries,
    Records,
    Attributes,
}

impl Counted {
    /// The flag that sets its bound.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Self::Entries => "--otlp-max-entries",
            Self::Records => "--otlp-max-records",
            Self::Attributes => "--otlp-max-attributes",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Entries => "resource, scope and metric entries",
            Self::Records => "records (log records, data points, spans and their parts)",
            Self::Attributes => "attributes",
        }
    }
}

/// What an export holds, as far as it was counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Census {
    pub entries: usize,
    pub records: usize,
    pub attributes: usize,
}

/// An export past one of its bounds: refused whole, before it is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the export holds more than {limit} {} ({})", .what.noun(), .what.flag())]
pub(crate) struct OverLimit {
    pub what: Counted,
    pub limit: usize,
}

struct Counter {
    census: Census,
    limits: ExportLimits,
}

impl Counter {
    fn add(&mut self, what: Counted, n: usize) -> Result<(), OverLimit> {
        let (count, limit) = match what {
            Counted::Entries => (&mut self.census.entries, self.limits.max_entries),
            Counted::Records => (&mut self.census.records, self.limits.max_records),
            Counted::Attributes => (&mut self.census.attributes, self.limits.max_attributes),
        };
        *count = count.saturating_add(n);
        if *count > limit {
            return Err(OverLimit { what, limit });
        }
        Ok(())
    }
}

/// Counts a protobuf export. Malformed bytes end the count early (the decoder refuses them).
pub(crate) fn count_protobuf(
    kind: Signal,
    bytes: &[u8],
    limits: ExportLimits,
) -> Result<Census, OverLimit> {
    let mut counter = Counter {
        census: Census::default(),
        limits,
    };
    match walk_protobuf(bytes, Shape::request(kind), &mut counter, 0) {
        Ok(()) | Err(Stop::Malformed) => Ok(counter.census),
        Err(Stop::Over(over)) => Err(over),
    }
}

/// Counts a JSON export. Malformed JSON ends the count early (the decoder refuses it).
pub(crate) fn count_json(
    kind: Signal,
    bytes: &[u8],
    limits: ExportLimits,
) -> Result<Census, OverLimit> {
    let mut counter = Counter {
        census: Census::default(),
        limits,
    };
    let mut over = None;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walk = JsonWalk {
        child: Message(Shape::request(kind), None),
        counter: &mut counter,
        over: &mut over,
    };
    let _ = walk.deserialize(&mut deserializer);
    match over {
        Some(over) => Err(over),
        None => Ok(counter.census),
    }
}

/// The messages of the OTLP schema that repeat or nest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    LogsRequest,
    MetricsRequest,
    TracesRequest,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Resource,
    EntityRef,
    Scope,
    ScopeLogs,
    ScopeMetrics,
    ScopeSpans,
    LogRecord,
    Metric,
    /// Gauge, Sum, Histogram, ExponentialHistogram or Summary: `data_points` is field 1.
    NumberPoints,
    HistogramPoints,
    ExponentialPoints,
    SummaryPoints,
    NumberPoint,
    HistogramPoint,
    ExponentialPoint,
    Buckets,
    SummaryPoint,
    Exemplar,
    Span,
    SpanEvent,
    SpanLink,
    KeyValue,
    AnyValue,
    /// ArrayValue or KeyValueList: `values` is field 1.
    ArrayValue,
    KeyValueList,
    /// A message with nothing counted inside (Status, ValueAtQuantile).
    Leaf,
}

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Child {
    /// A message (each occurrence counted as `Counted`, when set).
    Message(Shape, Option<Counted>),
    /// Repeated numbers or strings, each counted as an attribute.
    Scalars(Packing),
}

/// How a repeated scalar is laid out in protobuf when packed.
#[derive(Debug, Clone, Copy)]
enum Packing {
    /// Varints: an element ends at each byte without its high bit.
    Varint,
    /// Eight bytes an element (fixed64, double).
    Fixed64,
    /// Not packable (strings): each occurrence is one element.
    None,
}

use Child::{Message, Scalars};
use Counted::{Attributes, Entries, Records};

const ATTRIBUTES: Child = Message(Shape::KeyValue, Some(Attributes));

impl Shape {
    fn request(kind: Signal) -> Self {
        match kind {
            Signal::Logs => Self::LogsRequest,
            Signal::Metrics => Self::MetricsRequest,
            Signal::Traces => Self::TracesRequest,
        }
    }

    /// The field numbered `number` (protobuf) or named `name` (JSON), where it matters.
    fn field(self, number: u32, name: &str) -> Option<Child> {
        let is = |n: u32, json: &str| number == n || name == json;
        let child = match self {
            Self::LogsRequest if is(1, "resourceLogs") => {
                Message(Self::ResourceLogs, Some(Entries))
            }
            Self::MetricsRequest if is(1, "resourceMetrics") => {
                Message(Self::ResourceMetrics, Some(Entries))
            }
            Self::TracesRequest if is(1, "resourceSpans") => {
                Message(Self::ResourceSpans, Some(Entries))
            }
            Self::ResourceLogs | Self::ResourceMetrics | Self::ResourceSpans
                if is(1, "resource") =>
            {
                Message(Self::Resource, None)
            }
            Self::ResourceLogs if is(2, "scopeLogs") => Message(Self::ScopeLogs, Some(Entries)),
            Self::ResourceMetrics if is(2, "scopeMetrics") => {
                Message(Self::ScopeMetrics, Some(Entries))
            }
            Self::ResourceSpans if is(2, "scopeSpans") => Message(Self::ScopeSpans, Some(Entries)),
            Self::Resource if is(1, "attributes") => ATTRIBUTES,
            Self::Resource if is(3, "entityRefs") => Message(Self::EntityRef, Some(Attributes)),
            Self::EntityRef if is(3, "idKeys") || is(4, "descriptionKeys") => {
                Scalars(Packing::None)
            }
            Self::ScopeLogs | Self::ScopeMetrics | Self::ScopeSpans if is(1, "scope") => {
                Message(Self::Scope, None)
            }
            Self::Scope if is(3, "attributes") => ATTRIBUTES,
            Self::ScopeLogs if is(2, "logRecords") => Message(Self::LogRecord, Some(Records)),
            Self::ScopeMetrics if is(2, "metrics") => Message(Self::Metric, Some(Entries)),
            Self::ScopeSpans if is(2, "spans") => Message(Self::Span, Some(Records)),
            Self::LogRecord if is(5, "body") => Message(Self::AnyValue, None),
            Self::LogRecord if is(6, "attributes") => ATTRIBUTES,
            Self::Metric if is(5, "gauge") || is(7, "sum") => Message(Self::NumberPoints, None),
            Self::Metric if is(9, "histogram") => Message(Self::HistogramPoints, None),
            Self::Metric if is(10, "exponentialHistogram") => {
                Message(Self::ExponentialPoints, None)
            }
            Self::Metric if is(11, "summary") => Message(Self::SummaryPoints, None),
            Self::Metric if is(12, "metadata") => ATTRIBUTES,
            Self::NumberPoints if is(1, "dataPoints") => Message(Self::NumberPoint, Some(Records)),
            Self::HistogramPoints if is(1, "dataPoints") => {
                Message(Self::HistogramPoint, Some(Records))
            }
            Self::ExponentialPoints if is(1, "dataPoints") => {
                Message(Self::ExponentialPoint, Some(Records))
            }
            Self::SummaryPoints if is(1, "dataPoints") => {
                Message(Self::SummaryPoint, Some(Records))
            }
            Self::NumberPoint if is(7, "attributes") => ATTRIBUTES,
            Self::NumberPoint if is(5, "exemplars") => Message(Self::Exemplar, Some(Records)),
            Self::HistogramPoint if is(9, "attributes") => ATTRIBUTES,
            Self::HistogramPoint if is(6, "bucketCounts") || is(7, "explicitBounds") => {
                Scalars(Packing::Fixed64)
            }
            Self::HistogramPoint if is(8, "exemplars") => Message(Self::Exemplar, Some(Records)),
            Self::ExponentialPoint if is(1, "attributes") => ATTRIBUTES,
            Self::ExponentialPoint if is(8, "positive") || is(9, "negative") => {
                Message(Self::Buckets, None)
            }
            Self::ExponentialPoint if is(11, "exemplars") => Message(Self::Exemplar, Some(Records)),
            Self::Buckets if is(2, "bucketCounts") => Scalars(Packing::Varint),
            Self::SummaryPoint if is(7, "attributes") => ATTRIBUTES,
            Self::SummaryPoint if is(6, "quantileValues") => Message(Self::Leaf, Some(Records)),
            Self::Exemplar if is(7, "filteredAttributes") => ATTRIBUTES,
            Self::Span if is(9, "attributes") => ATTRIBUTES,
            Self::Span if is(11, "events") => Message(Self::SpanEvent, Some(Records)),
            Self::Span if is(13, "links") => Message(Self::SpanLink, Some(Records)),
            Self::SpanEvent if is(3, "attributes") => ATTRIBUTES,
            Self::SpanLink if is(4, "attributes") => ATTRIBUTES,
            Self::KeyValue if is(2, "value") => Message(Self::AnyValue, None),
            Self::AnyValue if is(5, "arrayValue") => Message(Self::ArrayValue, None),
            Self::AnyValue if is(6, "kvlistValue") => Message(Self::KeyValueList, None),
            Self::ArrayValue if is(1, "values") => Message(Self::AnyValue, Some(Attributes)),
            Self::KeyValueList if is(1, "values") => ATTRIBUTES,
            _ => return None,
        };
        Some(child)
    }
}

/// Nesting deeper than prost decodes (its recursion limit is 100) is the decoder's to refuse.
const MAX_DEPTH: usize = 100;

enum Stop {
    Over(OverLimit),
    Malformed,
}

impl From<OverLimit> for Stop {
    fn from(over: OverLimit) -> Self {
        Self::Over(over)
    }
}

fn varint(bytes: &mut &[u8]) -> Result<u64, Stop> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(Stop::Malformed)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Stop::Malformed)
}

fn take<'a>(bytes: &mut &'a [u8], n: u64) -> Result<&'a [u8], Stop> {
    let n = usize::try_from(n).map_err(|_| Stop::Malformed)?;
    if n > bytes.len() {
        return Err(Stop::Malformed);
    }
    let (taken, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(taken)
}

fn walk_protobuf(
    mut bytes: &[u8],
    shape: Shape,
    counter: &mut Counter,
    depth: usize,
) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Malformed);
    }
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).map_err(|_| Stop::Malformed)?;
        let child = shape.field(number, "");
        match key & 7 {
            // varint, 64-bit, 32-bit: a scalar, or one element of an unpacked repeated scalar.
            wire @ (0 | 1 | 5) => {
                match wire {
                    0 => drop(varint(&mut bytes)?),
                    1 => drop(take(&mut bytes, 8)?),
                    _ => drop(take(&mut bytes, 4)?),
                }
                if let Some(Scalars(_)) = child {
                    counter.add(Attributes, 1)?;
                }
            }
            2 => {
                let len = varint(&mut bytes)?;
                let value = take(&mut bytes, len)?;
                match child {
                    Some(Message(inner, counted)) => {
                        if let Some(what) = counted {
                            counter.add(what, 1)?;
                        }
                        walk_protobuf(value, inner, counter, depth + 1)?;
                    }
                    // A packed run (each element at least one byte) or one string.
                    Some(Scalars(packing)) => {
                        let elements = match packing {
                            Packing::Varint => value.iter().filter(|b| *b & 0x80 == 0).count(),
                            Packing::Fixed64 => value.len() / 8,
                            Packing::None => 1,
                        };
                        counter.add(Attributes, elements)?;
                    }
                    None => {}
                }
            }
            _ => return Err(Stop::Malformed),
        }
    }
    Ok(())
}

/// A JSON value walked as `child`: a message (counted as its field says) or a list of
/// scalars (each counted as an attribute). An array is a repeated field: each element is
/// walked (and counted) alone.
struct JsonWalk<'c> {
    child: Child,
    counter: &'c mut Counter,
    over: &'c mut Option<OverLimit>,
}

impl JsonWalk<'_> {
    fn count<E: serde::de::Error>(&mut self, what: Option<Counted>) -> Result<(), E> {
        match what.map(|what| self.counter.add(what, 1)) {
            Some(Err(over)) => {
                *self.over = Some(over);
                Err(E::custom("over a bound"))
            }
            _ => Ok(()),
        }
    }

    fn walk(&mut self, child: Child) -> JsonWalk<'_> {
        JsonWalk {
            child,
            counter: self.counter,
            over: self.over,
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonWalk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let Message(shape, counted) = self.child else {
            // An object where scalars were expected: the decoder's to refuse.
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        self.count(counted)?;
        while let Some(child) = map.next_key_seed(FieldName(shape))? {
            match child {
                Some(child) => map.next_value_seed(self.walk(child))?,
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        match self.child {
            Scalars(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    self.count(Some(Attributes))?;
                }
            }
            child @ Message(..) => while seq.next_element_seed(self.walk(child))?.is_some() {},
        }
        Ok(())
    }

    // A lone scalar: nothing to count (or the decoder's to refuse).
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A JSON key, read as the field of `shape` it names (nothing is allocated for it).
struct FieldName(Shape);

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Option<Child>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName {
    type Value = Option<Child>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        // Field number 0 is never a field's: only the name can match.
        Ok(self.0.field(0, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    const CLAUDE_LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"claude-code"}}]},
      "scopeLogs":[{"scope":{"name":"claude","attributes":[{"key":"a","value":{"intValue":1}}]},
      "logRecords":[
        {"body":{"stringValue":"claude_code.api_request"},"attributes":[
          {"key":"session.id","value":{"stringValue":"s"}},
          {"key":"tags","value":{"arrayValue":{"values":[{"intValue":1},{"intValue":2}]}}},
          {"key":"map","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}}}]},
        {"body":{"stringValue":"claude_code.tool_result"}}]}]}]}"#;

    fn both<T>(json: &str, kind: Signal, limits: ExportLimits) -> Result<Census, OverLimit>
    where
        T: prost::Message + Default + serde::de::DeserializeOwned,
    {
        let from_json = count_json(kind, json.as_bytes(), limits);
        let request: T = serde_json::from_str(json).unwrap();
        let from_protobuf = count_protobuf(kind, &request.encode_to_vec(), limits);
        assert_eq!(from_json, from_protobuf, "both encodings count alike");
        from_json
    }

    #[test]
    fn an_export_is_counted_alike_in_either_encoding() {
        let census =
            both::<ExportLogsServiceRequest>(CLAUDE_LOGS, Signal::Logs, ExportLimits::default());
        assert_eq!(
            census,
            Ok(Census {
                // a resource entry and a scope entry
                entries: 2,
                records: 2,
                // service.name, the scope's a, session.id, tags and its 2 values, map and k
                attributes: 8,
            })
        );
    }

    #[test]
    fn each_bound_refuses_the_first_one_past_it() {
        let limits = |records, entries, attributes| ExportLimits {
            max_records: records,
            max_entries: entries,
            max_attributes: attributes,
        };
        let over = |what, limit| Err(OverLimit { what, limit });
        let logs = |l| both::<ExportLogsServiceRequest>(CLAUDE_LOGS, Signal::Logs, l);
        assert!(logs(limits(2, 2, 8)).is_ok(), "at the bounds");
        assert_eq!(logs(limits(1, 2, 8)), over(Records, 1));
        assert_eq!(logs(limits(2, 1, 8)), over(Entries, 1));
        assert_eq!(logs(limits(2, 2, 7)), over(Attributes, 7));
        let message = OverLimit {
            what: Records,
            limit: 1,
        }
        .to_string();
        assert!(message.contains("--otlp-max-records"), "{message}");
    }

    #[test]
    fn metrics_and_traces_count_points_spans_and_what_hangs_off_them() {
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"a","sum":{"dataPoints":[{"asDouble":1,"attributes":[{"key":"k","value":{"stringValue":"v"}}]},{"asInt":"2"}]}},
          {"name":"b","histogram":{"dataPoints":[{"bucketCounts":["1","2","3"],"explicitBounds":[1.0,2.0],
             "exemplars":[{"asDouble":1}]}]}},
          {"name":"c","exponentialHistogram":{"dataPoints":[{"positive":{"bucketCounts":["1","2"]}}]}},
          {"name":"d","summary":{"dataPoints":[{"quantileValues":[{"quantile":0.5,"value":1}]}]}},
          {"name":"e","gauge":{"dataPoints":[{"asDouble":1}]}}]}]}]}"#;
        let census =
            both::<ExportMetricsServiceRequest>(metrics, Signal::Metrics, ExportLimits::default())
                .unwrap();
        // 1 resource, 1 scope, 5 metrics; 6 points, an exemplar and a quantile; 1 attribute,
        // 5 histogram numbers and 2 bucket counts.
        assert_eq!(
            (census.entries, census.records, census.attributes),
            (7, 8, 8)
        );
        let traces = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
          {"name":"s","attributes":[{"key":"k","value":{"stringValue":"v"}}],
           "events":[{"name":"e","attributes":[{"key":"k","value":{"intValue":1}}]}],
           "links":[{"attributes":[{"key":"k","value":{"intValue":1}}]}],
           "status":{"code":2}}]}]}]}"#;
        let census =
            both::<ExportTraceServiceRequest>(traces, Signal::Traces, ExportLimits::default())
                .unwrap();
        assert_eq!(
            (census.entries, census.records, census.attributes),
            (2, 3, 3)
        );
    }

    #[test]
    fn an_inflating_export_is_refused_before_the_end_of_its_bytes() {
        // 8 million empty log records: 16 MB of protobuf, 24 MB of JSON.
        let record = [0x12u8, 0x00]; // log_records (2), length 0
        let mut scope = Vec::new();
        for _ in 0..8_000_000 {
            scope.extend_from_slice(&record);
        }
        let mut request = vec![0x0a]; // resource_logs (1)
        let mut resource = vec![0x12]; // scope_logs (2)
        push_varint(&mut resource, scope.len() as u64);
        resource.extend_from_slice(&scope);
        push_varint(&mut request, resource.len() as u64);
        request.extend_from_slice(&resource);
        let refused = count_protobuf(Signal::Logs, &request, ExportLimits::default());
        assert_eq!(
            refused,
            Err(OverLimit {
                what: Records,
                limit: 32_768
            })
        );
        ExportLogsServiceRequest::decode(&request[..]).expect("it is valid OTLP");
        let records = vec!["{}"; 8_000_000].join(",");
        let json =
            format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#);
        assert_eq!(
            count_json(Signal::Logs, json.as_bytes(), ExportLimits::default()),
            refused
        );
    }

    #[test]
    fn what_is_not_otlp_is_left_to_the_decoder() {
        let limits = ExportLimits::default();
        assert!(count_protobuf(Signal::Logs, b"\xff\xff\xff", limits).is_ok());
        assert!(count_json(Signal::Logs, b"{\"resourceLogs\": 5}", limits).is_ok());
        assert!(count_json(Signal::Logs, b"not json", limits).is_ok());
        // Unknown keys are skipped without being walked as messages.
        let unknown = r#"{"somethingNew":[{},{},{}],"resourceLogs":[]}"#;
        assert_eq!(
            count_json(Signal::Logs, unknown.as_bytes(), limits),
            Ok(Census::default())
        );
    }

    fn push_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
}
