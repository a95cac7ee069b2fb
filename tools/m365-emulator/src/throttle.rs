//! Throttling and fault injection (graph-spec §7.1–§7.3): a resource-unit token bucket and a
//! write bucket per (app, tenant) pair with configurable quotas, the 429 body and headers,
//! and injected 429/503/504/empty-502/"timeout after commit" faults.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::error::GraphError;
use crate::state::{Buckets, Fault, FaultKind, Quotas, Realism};

/// What a request costs (graph-spec §7.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Resource units.
    pub resource_units: f64,
    /// Writes (0 or 1).
    pub writes: f64,
}

/// The outcome of the throttling check.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `Some(429)` when refused.
    pub rejection: Option<GraphError>,
    /// RU charged (`x-ms-resource-unit`), when charged.
    pub resource_units: Option<u32>,
    /// `x-ms-throttle-limit-percentage` when above 0.8.
    pub limit_percentage: Option<f64>,
}

impl Admission {
    /// Not charged (batch envelopes, faults).
    #[must_use]
    pub fn free() -> Self {
        Self {
            rejection: None,
            resource_units: None,
            limit_percentage: None,
        }
    }
}

/// The RU cost of a request: base cost by endpoint, then `$select` −1, `$expand` +1,
/// `$top` < 20 −1, never below 1; writes cost 1 RU and 1 write.
#[must_use]
pub fn cost(method: &Method, path: &str, query: &str) -> Cost {
    if crate::graph::is_write(method) {
        return Cost {
            resource_units: 1.0,
            writes: 1.0,
        };
    }
    let segments: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
    let mut ru: i32 = match segments.as_slice() {
        ["users"] | ["users", "delta"] => 2,
        ["users", _, "licenseDetails"] => 2,
        ["groups", _, "members"] => 3,
        ["groups", _, "transitiveMembers"] => 5,
        ["subscribedSkus"] => 3,
        _ => 1,
    };
    let lower = query.to_ascii_lowercase();
    if lower.contains("$select=") || lower.contains("%24select=") {
        ru -= 1;
    }
    if lower.contains("$expand=") || lower.contains("%24expand=") {
        ru += 1;
    }
    if let Some(top) = query_value(&lower, "$top").or_else(|| query_value(&lower, "%24top"))
        && top.parse::<u32>().is_ok_and(|t| t < 20)
    {
        ru -= 1;
    }
    Cost {
        resource_units: f64::from(ru.max(1)),
        writes: 0.0,
    }
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

fn refill(level: f64, capacity: f64, window: chrono::Duration, elapsed: chrono::Duration) -> f64 {
    let window_ms = window.num_milliseconds().max(1) as f64;
    let elapsed_ms = elapsed.num_milliseconds().max(0) as f64;
    (level + capacity * elapsed_ms / window_ms).min(capacity)
}

/// One bucket pair to check: its key in `Realism::buckets`, its quotas, and the
/// `x-ms-throttle-scope` prefix it reports.
struct Scope {
    key: (String, String),
    quotas: Quotas,
    label: String,
}

fn level(realism: &mut Realism, scope: &Scope, now: DateTime<Utc>) -> Buckets {
    let q = scope.quotas;
    let b = realism.buckets.entry(scope.key.clone()).or_insert(Buckets {
        resource_units: q.resource_units,
        writes: q.writes,
        updated: now,
    });
    let elapsed = now - b.updated;
    b.resource_units = refill(
        b.resource_units,
        q.resource_units,
        q.resource_unit_window,
        elapsed,
    );
    b.writes = refill(b.writes, q.writes, q.write_window, elapsed);
    b.updated = now;
    *b
}

fn wait(level: f64, need: f64, capacity: f64, window: chrono::Duration) -> f64 {
    let rate_per_s = capacity / (window.num_milliseconds().max(1) as f64 / 1000.0);
    ((need - level) / rate_per_s).max(0.001)
}

/// Charges `cost` to the buckets of the (tenant, app) pair, the app across tenants and the
/// tenant across apps (graph-spec §7.2), or refuses with the 429 of §7.1 naming the exhausted
/// scope. Nothing is charged when any bucket refuses.
pub fn admit(
    realism: &mut Realism,
    tenant_id: &str,
    app_id: &str,
    cost: Cost,
    now: DateTime<Utc>,
) -> Admission {
    let pair = (tenant_id.to_owned(), app_id.to_owned());
    let kind = if cost.writes > 0.0 {
        "ReadWrite"
    } else {
        "Read"
    };
    let scopes = [
        Scope {
            quotas: realism
                .quota_overrides
                .get(&pair)
                .copied()
                .unwrap_or(realism.quotas),
            key: pair,
            label: format!("Tenant_Application/{kind}/{app_id}/{tenant_id}"),
        },
        // Scope names of the app-wide and tenant-wide limits are assumed.
        Scope {
            key: ("*".to_owned(), app_id.to_owned()),
            quotas: realism.app_quotas,
            label: format!("Application/{kind}/{app_id}"),
        },
        Scope {
            key: (tenant_id.to_owned(), "*".to_owned()),
            quotas: realism.tenant_quotas,
            label: format!("Tenant/{kind}/{tenant_id}"),
        },
    ];
    let fractional = realism.fractional_retry_after;
    for scope in &scopes {
        let b = level(realism, scope, now);
        let q = scope.quotas;
        let refusal = if b.resource_units < cost.resource_units {
            Some((
                wait(
                    b.resource_units,
                    cost.resource_units,
                    q.resource_units,
                    q.resource_unit_window,
                ),
                "ResourceUnitLimitExceeded",
            ))
        } else if cost.writes > 0.0 && b.writes < cost.writes {
            Some((
                wait(b.writes, cost.writes, q.writes, q.write_window),
                "WriteLimitExceeded",
            ))
        } else {
            None
        };
        if let Some((seconds, information)) = refusal {
            let error = too_many_requests(retry_after_value(seconds, fractional))
                .with_header(
                    HeaderName::from_static("x-ms-throttle-scope"),
                    HeaderValue::from_str(&scope.label)
                        .unwrap_or(HeaderValue::from_static("Tenant_Application")),
                )
                .with_header(
                    HeaderName::from_static("x-ms-throttle-information"),
                    HeaderValue::from_static(information),
                );
            return Admission {
                rejection: Some(error),
                resource_units: None,
                limit_percentage: None,
            };
        }
    }
    let mut used_max: f64 = 0.0;
    for scope in &scopes {
        if let Some(b) = realism.buckets.get_mut(&scope.key) {
            b.resource_units -= cost.resource_units;
            b.writes -= cost.writes;
            let used = 1.0 - b.resource_units / scope.quotas.resource_units.max(1.0);
            used_max = used_max.max(used);
        }
    }
    Admission {
        rejection: None,
        // RU costs are small whole numbers (1..=6).
        resource_units: Some(cost.resource_units as u32),
        limit_percentage: (used_max > 0.8).then_some(used_max.min(1.8)),
    }
}

/// `Retry-After` text: whole seconds rounded up, or three decimals when fractional.
#[must_use]
pub fn retry_after_value(seconds: f64, fractional: bool) -> String {
    if fractional {
        format!("{seconds:.3}")
    } else {
        format!("{}", seconds.ceil().max(1.0) as u64)
    }
}

/// The 429 of graph-spec §7.1 (body with `innerError.code/message/status`, `Retry-After`).
#[must_use]
pub fn too_many_requests(retry_after: String) -> GraphError {
    GraphError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Please retry again later.",
    )
    .with_inner("code", json!("429"))
    .with_inner("message", json!("Please retry after"))
    .with_inner("status", json!("429"))
    .with_header(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after).unwrap_or(HeaderValue::from_static("1")),
    )
}

/// Takes the first pending fault matching the request (decrementing it).
pub fn take_fault(
    realism: &mut Realism,
    method: &Method,
    path: &str,
    tenant_id: &str,
) -> Option<Fault> {
    let index = realism.faults.iter().position(|f| {
        f.remaining > 0
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && f.tenant
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(tenant_id))
            && match f.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == f.path,
            }
    })?;
    let fault = realism.faults.get_mut(index)?;
    fault.remaining -= 1;
    let taken = fault.clone();
    if fault.remaining == 0 {
        realism.faults.remove(index);
    }
    Some(taken)
}

/// The response of a status fault (429/503/504/empty 502).
#[must_use]
pub fn fault_response(fault: &Fault) -> Response {
    let retry_after = fault.retry_after.clone().unwrap_or_else(|| "1".to_owned());
    match fault.kind {
        FaultKind::TooManyRequests => too_many_requests(retry_after).into_response(),
        FaultKind::ServiceUnavailable if !fault.empty_body => GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry later.",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from_str(&retry_after).unwrap_or(HeaderValue::from_static("1")),
        )
        .into_response(),
        FaultKind::GatewayTimeout if !fault.empty_body => GraphError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "UnknownError",
            "The gateway did not receive a response from the service in time.",
        )
        .into_response(),
        FaultKind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        FaultKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT.into_response(),
        FaultKind::BadGatewayEmpty | FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit => {
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

/// A response whose body fails immediately, so the server aborts the connection and the
/// client sees a dropped connection instead of a response.
#[must_use]
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fault injection: connection dropped after commit",
        ))
    });
    Response::new(Body::from_stream(stream))
}
