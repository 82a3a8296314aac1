//! Cross-cutting request handling: request ids on every log line and response, metrics per
//! route, CORS for the PWA, bounded bodies and request time.

use crate::Config;
use axum::{
    extract::{MatchedPath, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::Response,
    Router,
};
use metrics::{Counter, Histogram};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn wrap(router: Router, config: &Config) -> Router {
    let origins: Vec<HeaderValue> =
        config.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([REQUEST_ID])
        .max_age(Duration::from_secs(600));
    router.layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes)).layer(middleware::from_fn_with_state(RouteMetrics::default(), record_metrics)).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            }))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            // A bug must still answer in the API's error shape, and never take the process down.
            .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(crate::ApiError::Internal("handler panicked".into()))
            }))
            .layer(cors)
            .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout)),
    )
}

/// Requests and latency by route (the matched template, not the raw path), method, status.
async fn record_metrics(
    axum::extract::State(series): axum::extract::State<RouteMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    series.record(route, method, response.status(), started.elapsed().as_secs_f64());
    response
}

/// A method as a label: the standard ones by name, any other as "other" (a client's
/// made-up methods must not grow the series without bound).
fn method_label(m: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] =
        ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().position(|k| k == m).map_or("other", |i| NAMES[i])
}

/// The handles of each (route, method, status) seen, so a request neither builds metric keys
/// (labels allocated and hashed) nor looks them up in the registry. Bounded: routes are the
/// router's templates, methods the standard ones, statuses three digits.
#[derive(Clone, Default)]
struct RouteMetrics(Arc<RwLock<HashMap<String, Vec<Series>>>>);

struct Series {
    method: &'static str,
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    fn record(&self, route: &str, method: &'static str, status: StatusCode, seconds: f64) {
        let seen = |s: &&Series| s.method == method && s.status == status;
        if let Ok(map) = self.0.read() {
            if let Some(s) = map.get(route).and_then(|v| v.iter().find(seen)) {
                s.requests.increment(1);
                s.duration.record(seconds);
                return;
            }
        }
        let route_label = route.to_owned();
        let s = Series {
            method,
            status,
            requests: metrics::counter!("http_requests_total", "route" => route_label.clone(), "method" => method, "status" => status.as_u16().to_string()),
            duration: metrics::histogram!("http_request_duration_seconds", "route" => route_label, "method" => method),
        };
        s.requests.increment(1);
        s.duration.record(seconds);
        if let Ok(mut map) = self.0.write() {
            let v = map.entry(route.to_owned()).or_default();
            // Another request may have added it meanwhile.
            if !v.iter().any(|s| seen(&s)) {
                v.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_are_named_and_any_other_is_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        let made_up = Method::from_bytes(b"BREW").expect("method");
        assert_eq!(method_label(&made_up), "other");
    }

    #[test]
    fn a_series_is_kept_once_however_often_it_is_recorded() {
        let m = RouteMetrics::default();
        for _ in 0..3 {
            m.record("/api/programs", "GET", StatusCode::OK, 0.001);
            m.record("/api/programs", "GET", StatusCode::UNAUTHORIZED, 0.001);
        }
        m.record("/api/health", "GET", StatusCode::OK, 0.001);
        let map = m.0.read().expect("lock");
        assert_eq!(map.len(), 2);
        assert_eq!(map["/api/programs"].len(), 2);
        assert_eq!(map["/api/health"].len(), 1);
    }
}
