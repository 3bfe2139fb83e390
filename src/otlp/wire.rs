//! OTLP/HTTP bodies: `application/x-protobuf` or `application/json`, `gzip` or identity, and
//! the answer in the request's own encoding (OTLP specification, "OTLP/HTTP").
//!
//! The decompressed size is capped while decompressing, so a small gzip bomb costs at most the
//! limit, and what decoding may build is counted before anything is built
//! ([`super::bounds`]): an export past a bound is refused undecoded. JSON follows the OTLP JSON mapping that `opentelemetry-proto`'s `with-serde` types
//! read: camelCase keys, 64-bit integers as numbers or strings, hex trace ids, unknown keys
//! ignored.

use std::borrow::Cow;
use std::io::Read;

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Signal;
use super::bounds::{self, ExportLimits, OverLimit};

/// How a request was encoded; the answer goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    /// The encoding a `Content-Type` names, if OTLP/HTTP has it.
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Self::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }
}

/// Why a body could not be read; each is a 4xx the exporter must not retry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error(
        "unsupported Content-Type {0:?}: OTLP/HTTP takes application/x-protobuf or application/json"
    )]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding {0:?}: OTLP/HTTP takes gzip or none")]
    UnsupportedEncoding(String),
    #[error("the body is larger than {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
    #[error("the gzip body is corrupt: {0}")]
    CorruptGzip(String),
    #[error("the body is not a valid OTLP {encoding} {what}: {reason}")]
    Malformed {
        encoding: &'static str,
        what: &'static str,
        reason: String,
    },
}

/// A body's bytes as they were before compression (at most `max_bytes`) and their encoding.
#[cfg(test)]
pub(crate) fn unwrap_body<'a>(
    content_type: &str,
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_bytes: usize,
) -> Result<(Cow<'a, [u8]>, Encoding), WireError> {
    unwrap_body_within(content_type, content_encoding, body, max_bytes, |_| true).map_err(|e| {
        match e {
            Inflate::Refused(e) => e,
            Inflate::NoRoom => unreachable!("room is always given"),
        }
    })
}

/// A body's bytes as they were before compression (at most `max_bytes`) and their encoding,
/// a gzip body inflated a step at a time, each step past its length asking `room` first
/// ([`gunzip_within`]): a body charged its length on the wire is charged for what it inflates
/// to as it grows.
pub(crate) fn unwrap_body_within<'a>(
    content_type: &str,
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_bytes: usize,
    room: impl FnMut(usize) -> bool,
) -> Result<(Cow<'a, [u8]>, Encoding), Inflate> {
    let refused = Inflate::Refused;
    let encoding = Encoding::from_content_type(content_type)
        .ok_or_else(|| refused(WireError::UnsupportedMediaType(content_type.to_owned())))?;
    let bytes = match content_encoding.map(str::trim) {
        None | Some("") => Cow::Borrowed(body),
        Some(e) if e.eq_ignore_ascii_case("identity") => Cow::Borrowed(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            Cow::Owned(gunzip_within(body, max_bytes, room)?)
        }
        Some(other) => return Err(refused(WireError::UnsupportedEncoding(other.to_owned()))),
    };
    if bytes.len() > max_bytes {
        return Err(refused(WireError::TooLarge { limit: max_bytes }));
    }
    Ok((bytes, encoding))
}

/// Counts an export's bytes (no larger than the limit already) and, within the bounds,
/// decodes them.
pub(crate) fn decode_counted<T>(
    kind: Signal,
    encoding: Encoding,
    bytes: &[u8],
    limits: ExportLimits,
) -> Result<T, WireError>
where
    T: Message + Default + DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => bounds::count_protobuf(kind, bytes, limits)?,
        Encoding::Json => bounds::count_json(kind, bytes, limits)?,
    };
    let what = short_type_name::<T>();
    let request = match encoding {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| WireError::Malformed {
            encoding: "protobuf",
            what,
            reason: e.to_string(),
        })?,
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
            encoding: "JSON",
            what,
            reason: e.to_string(),
        })?,
    };
    Ok(request)
}

/// The answer's body: the response message in the request's encoding. A response with nothing
/// set is `{}` in JSON (`opentelemetry-proto` would write `"partialSuccess": null`).
pub(crate) fn encode_response<T>(response: &T, encoding: Encoding) -> Vec<u8>
where
    T: Message + Serialize + Default + PartialEq,
{
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json if *response == T::default() => b"{}".to_vec(),
        Encoding::Json => {
            let mut json = serde_json::to_value(response).unwrap_or_default();
            int64_as_strings(&mut json);
            serde_json::to_vec(&json).unwrap_or_else(|_| b"{}".to_vec())
        }
    }
}

/// The OTLP JSON mapping writes 64-bit integers as strings (`"rejectedLogRecords": "2"`);
/// the only numbers in a response are such counts.
fn int64_as_strings(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
            *json = serde_json::Value::String(n.to_string());
        }
        serde_json::Value::Object(fields) => fields.values_mut().for_each(int64_as_strings),
        serde_json::Value::Array(items) => items.iter_mut().for_each(int64_as_strings),
        _ => {}
    }
}

/// Why [`gunzip_within`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inflate {
    /// The body is corrupt, or larger than allowed once inflated: the exporter must not retry.
    Refused(WireError),
    /// `room` gave no more: a retry later may find it.
    NoRoom,
}

/// How much is inflated between two asks for room.
pub(crate) const INFLATE_STEP: usize = 64 * 1024;

/// Inflates `body` a step at a time, asking `room` for each [`INFLATE_STEP`] of output past
/// the body's own length before it is made (a body charged at its length on the wire is then
/// charged for what it inflates to as it grows, not for the most it could), failing as soon as
/// the output passes `max_bytes`.
pub(crate) fn gunzip_within(
    body: &[u8],
    max_bytes: usize,
    mut room: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, Inflate> {
    let mut decoder = flate2::read::GzDecoder::new(body);
    let mut inflated = Vec::new();
    // What the charge covers: the body's length, then a step more each time it is used up.
    let mut covered = body.len();
    loop {
        if inflated.len() >= covered {
            if !room(INFLATE_STEP) {
                return Err(Inflate::NoRoom);
            }
            covered += INFLATE_STEP;
        }
        let read = (&mut decoder)
            .take((covered - inflated.len()) as u64)
            .read_to_end(&mut inflated)
            .map_err(|e| Inflate::Refused(WireError::CorruptGzip(e.to_string())))?;
        if inflated.len() > max_bytes {
            return Err(Inflate::Refused(WireError::TooLarge { limit: max_bytes }));
        }
        if read == 0 {
            return Ok(inflated);
        }
    }
}

/// `ExportLogsServiceRequest` for `opentelemetry_proto::…::ExportLogsServiceRequest`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes an export request (`T`, for example `ExportLogsServiceRequest`, of `kind`) from a
    /// body as it arrived: at most `max_bytes` once decompressed, and within `limits` once
    /// counted.
    fn decode_request<T>(
        kind: Signal,
        content_type: &str,
        content_encoding: Option<&str>,
        body: &[u8],
        max_bytes: usize,
        limits: ExportLimits,
    ) -> Result<(T, Encoding), WireError>
    where
        T: Message + Default + DeserializeOwned,
    {
        let (bytes, encoding) = unwrap_body(content_type, content_encoding, body, max_bytes)?;
        let request = decode_counted(kind, encoding, &bytes, limits)?;
        Ok((request, encoding))
    }
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use std::io::Write;

    const LIMIT: usize = 1 << 20;

    fn gzipped(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzip_body_asks_room_for_what_it_inflates_to_a_step_at_a_time() {
        let plain = vec![b'a'; 3 * INFLATE_STEP + 10];
        let body = gzipped(&plain);
        let mut asked = 0;
        let inflated = gunzip_within(&body, LIMIT, |more| {
            asked += more;
            true
        })
        .unwrap();
        assert_eq!(inflated, plain);
        // Its length on the wire, then whole steps until the output is covered.
        assert_eq!(asked, 3 * INFLATE_STEP, "{} bytes on the wire", body.len());
        // No room: stopped before the step it has no room for, not refused.
        let mut steps = 0;
        let stopped = gunzip_within(&body, LIMIT, |_| {
            steps += 1;
            steps < 2
        });
        assert_eq!(stopped, Err(Inflate::NoRoom));
        // Past the limit: refused, however much room there is.
        let bomb = gzipped(&vec![0; LIMIT + 1]);
        assert_eq!(
            gunzip_within(&bomb, LIMIT, |_| true),
            Err(Inflate::Refused(WireError::TooLarge { limit: LIMIT }))
        );
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn logs(body: &[u8], content_type: &str, encoding: Option<&str>) -> Result<usize, WireError> {
        decode_request::<ExportLogsServiceRequest>(
            Signal::Logs,
            content_type,
            encoding,
            body,
            LIMIT,
            ExportLimits::default(),
        )
        .map(|(request, _)| request.resource_logs.len())
    }

    #[test]
    fn both_encodings_gzip_or_not_give_the_same_request() {
        let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1784916872544000000","body":{"stringValue":"claude_code.api_request"}}]}]}]}"#;
        let (from_json, encoding) = decode_request::<ExportLogsServiceRequest>(
            Signal::Logs,
            "application/json; charset=utf-8",
            None,
            json,
            LIMIT,
            ExportLimits::default(),
        )
        .unwrap();
        assert_eq!(encoding, Encoding::Json);
        let record = &from_json.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_784_916_872_544_000_000);
        let protobuf = from_json.encode_to_vec();
        let (from_protobuf, encoding) = decode_request::<ExportLogsServiceRequest>(
            Signal::Logs,
            "application/x-protobuf",
            Some("gzip"),
            &gzip(&protobuf),
            LIMIT,
            ExportLimits::default(),
        )
        .unwrap();
        assert_eq!(encoding, Encoding::Protobuf);
        assert_eq!(from_protobuf, from_json);
        assert_eq!(logs(&gzip(json), "application/json", Some("GZIP")), Ok(1));
    }

    #[test]
    fn what_is_not_otlp_is_refused_with_the_reason() {
        assert!(matches!(
            logs(b"\xff\xff\xff", "application/x-protobuf", None),
            Err(WireError::Malformed {
                encoding: "protobuf",
                ..
            })
        ));
        let wrong_shape = logs(br#"{"resourceLogs": 5}"#, "application/json", None).unwrap_err();
        assert!(
            wrong_shape.to_string().contains("ExportLogsServiceRequest"),
            "{wrong_shape}"
        );
        assert_eq!(
            logs(b"{}", "text/plain", None),
            Err(WireError::UnsupportedMediaType("text/plain".into()))
        );
        assert_eq!(
            logs(b"{}", "application/json", Some("br")),
            Err(WireError::UnsupportedEncoding("br".into()))
        );
        assert!(matches!(
            logs(b"not gzip", "application/json", Some("gzip")),
            Err(WireError::CorruptGzip(_))
        ));
        // Unknown keys are ignored, as the specification requires.
        assert_eq!(
            logs(br#"{"somethingNew": []}"#, "application/json", None),
            Ok(0)
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b' '; 64 * LIMIT]);
        assert!(bomb.len() < LIMIT / 4, "small on the wire: {}", bomb.len());
        assert_eq!(
            logs(&bomb, "application/json", Some("gzip")),
            Err(WireError::TooLarge { limit: LIMIT })
        );
        assert_eq!(
            logs(&vec![b' '; LIMIT + 1], "application/json", None),
            Err(WireError::TooLarge { limit: LIMIT })
        );
    }

    #[test]
    fn the_answer_is_in_the_request_encoding() {
        let empty = ExportLogsServiceResponse::default();
        assert_eq!(encode_response(&empty, Encoding::Json), b"{}");
        assert!(encode_response(&empty, Encoding::Protobuf).is_empty());
        let partial = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "2 log records have no session.id".into(),
            }),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&encode_response(&partial, Encoding::Json)).unwrap();
        assert_eq!(
            json["partialSuccess"]["errorMessage"],
            "2 log records have no session.id"
        );
        let decoded =
            ExportLogsServiceResponse::decode(&encode_response(&partial, Encoding::Protobuf)[..])
                .unwrap();
        assert_eq!(decoded, partial);
    }
}
