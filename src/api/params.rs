//! Query-string parameters, parsed with errors that name the parameter.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use crate::domain::time::{HOUR_MS, TimeRange, parse_duration_ms};

use super::error::ApiError;
use crate::service::Window;

/// The longest value any query parameter may have.
const MAX_PARAM_LEN: usize = 1024;

/// A handler's query string; an extractor whose rejection is our JSON error.
pub(crate) struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) =
            Query::<HashMap<String, String>>::from_request_parts(parts, state).await?;
        Ok(Self(query))
    }
}

impl Params {
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) if value.len() > MAX_PARAM_LEN => Err(ApiError::field(
                name,
                format!("{name} is longer than {MAX_PARAM_LEN} bytes"),
            )),
            Some(value) => Ok(Some(value.clone())),
        }
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)?
            .map(|value| {
                value
                    .parse::<i64>()
                    .map_err(|_| ApiError::field(name, format!("{name} must be an integer")))
            })
            .transpose()
    }

    /// A count in `1..=max`, `default` when absent.
    pub(crate) fn limit(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.int(name)? {
            None => Ok(default),
            Some(n) if n >= 1 => Ok((n as usize).min(max)),
            Some(_) => Err(ApiError::field(name, format!("{name} must be at least 1"))),
        }
    }

    /// `start` and `end` in ms. Both or neither; `end` defaults to now when only `start` is
    /// given.
    pub(crate) fn range(&self, now_ms: i64) -> Result<Option<TimeRange>, ApiError> {
        let start = self.int("start")?;
        let end = self.int("end")?;
        let (start, end) = match (start, end) {
            (None, None) => return Ok(None),
            (Some(start), end) => (start, end.unwrap_or(now_ms)),
            (None, Some(_)) => return Err(ApiError::field("start", "start is required with end")),
        };
        TimeRange::new(start, end)
            .map(Some)
            .map_err(|e| ApiError::field("start", e.to_string()))
    }

    /// `start`/`end` (exact), or `hours=N` (the last N hours, rolling), or the view's default.
    pub(crate) fn window(&self, now_ms: i64) -> Result<Window, ApiError> {
        if let Some(range) = self.range(now_ms)? {
            return Ok(Window::Exact(range));
        }
        match self.int("hours")? {
            None => Ok(Window::Default),
            Some(hours) if (1..=24 * 400).contains(&hours) => Ok(Window::Last(hours * HOUR_MS)),
            Some(_) => Err(ApiError::field("hours", "hours must be between 1 and 9600")),
        }
    }

    /// A duration such as `5m` or `1h`.
    pub(crate) fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)?
            .map(|value| {
                parse_duration_ms(&value)
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        ApiError::field(name, format!("{name} must be a duration such as 5m or 1h"))
                    })
            })
            .transpose()
    }
}
