//! End-to-end: each Check is an OpenTelemetry span, exported over OTLP/gRPC to a collector,
//! continuing the trace context the client sent through the real Envoy 1.40.
//!
//! The collector is a small tonic `opentelemetry.proto.collector.trace.v1.TraceService` inside
//! this test binary that keeps every span it receives. The test Envoy has no tracer configured,
//! so it forwards the client's `traceparent` / B3 headers to ext_authz unchanged, and the Check
//! span's parent is the client's span. (An Envoy with a tracer would start its own span and
//! send that as the parent instead; the trace id would still be the client's.)
//!
//! Spans leave sessiongate in batches (every 5 s by default), so each test waits for its span
//! with a deadline rather than a fixed sleep.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttributeRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::process::ChildProcess;
use support::tokens::token;
use support::{SendExt as _, Stack, Workload::Frontend, policy, run};
use tokio::sync::{Notify, OnceCell};

/// Longer than the batch processor's 5 s schedule, with room for a busy machine.
const SPAN_DEADLINE: Duration = Duration::from_secs(20);

/// What the collector received: every span, with the `service.name` of its resource.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<(String, Span)>>,
    arrived: Notify,
}

/// The OTLP trace receiver.
#[derive(Clone)]
struct Collector(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| string_value(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        drop(spans);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn string_value(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let collector = Collector(Arc::default());
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (collector, addr)
    }

    /// The first span of trace `trace_id` (hex), waiting up to [`SPAN_DEADLINE`].
    async fn span_of_trace(&self, trace_id: &str) -> (String, Span) {
        let wanted = hex_bytes(trace_id);
        let found = tokio::time::timeout(SPAN_DEADLINE, async {
            loop {
                let arrived = self.0.arrived.notified();
                if let Some(found) = self
                    .0
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(_, span)| span.trace_id == wanted)
                {
                    return found.clone();
                }
                arrived.await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no span of trace {trace_id} within {SPAN_DEADLINE:?}; received {:?}",
                self.0.spans.lock().unwrap()
            )
        })
    }
}

/// One stack exporting to one collector for the whole binary; its `reports` route is in
/// dry-run.
async fn traced_stack() -> &'static (Stack, Collector) {
    static STACK: OnceCell<(Stack, Collector)> = OnceCell::const_new();
    STACK
        .get_or_init(|| async {
            let (collector, addr) = Collector::start().await;
            let reports = "  - name: reports\n    path_prefix: /reports\n";
            let policy = policy::sessiongate_yaml(None);
            assert!(policy.contains(reports), "the test policy changed");
            let policy = policy.replacen(reports, &format!("{reports}    dry_run: true\n"), 1);
            let yaml = format!(
                "{policy}\ntelemetry:\n  otlp_endpoint: \"http://{addr}\"\n  service_name: sessiongate-e2e\n"
            );
            (Stack::start(&yaml).await, collector)
        })
        .await
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn bool_attribute(span: &Span, key: &str) -> Option<bool> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::BoolValue(value) => Some(*value),
            _ => None,
        })
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_value(kv.value.as_ref()?.value.as_ref()?))
}

/// A fresh random-looking id per test, so tests sharing the collector never see each other's
/// spans: the nanoseconds since the epoch, as hex of the requested width.
fn unique_hex(width: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let text = format!(
        "{:0width$x}",
        nanos ^ 0x5e55_1092_a7e0_0000_0000_0000_0000_0001
    );
    text[text.len() - width..].to_owned()
}

#[test]
fn an_allowed_check_continues_the_w3c_trace_of_the_request() {
    run(async {
        let (stack, collector) = traced_stack().await;
        let trace_id = unique_hex(32);
        let parent = unique_hex(16);
        let reply = stack
            .get(Frontend, "/orders/7")
            .bearer_auth(token().scope("orders:read").sign())
            .header("traceparent", format!("00-{trace_id}-{parent}-01"))
            .header("tracestate", "shop=checkout")
            .reply()
            .await;
        reply.assert_allowed();

        let (service, span) = collector.span_of_trace(&trace_id).await;
        assert_eq!(service, "sessiongate-e2e");
        assert_eq!(span.name, "sessiongate.check");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            span.parent_span_id,
            hex_bytes(&parent),
            "parent is the client's span"
        );
        assert_eq!(span.trace_state, "shop=checkout");
        assert_eq!(
            attribute(&span, "sessiongate.decision").as_deref(),
            Some("allow")
        );
        assert_eq!(attribute(&span, "sessiongate.reason"), None);
        assert!(bool_attribute(&span, "sessiongate.dry_run").is_none());
        assert_eq!(
            attribute(&span, "sessiongate.route").as_deref(),
            Some("orders-read")
        );
        let session = attribute(&span, "sessiongate.session").expect("session hash");
        assert_eq!(session, reply.upstream_single("x-sessiongate-session"));
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    });
}

#[test]
fn a_denied_check_continues_the_b3_trace_of_the_request() {
    run(async {
        let (stack, collector) = traced_stack().await;
        let trace_id = unique_hex(32);
        let parent = unique_hex(16);
        let reply = stack
            .get(Frontend, "/orders/7")
            .header("x-b3-traceid", &trace_id)
            .header("x-b3-spanid", &parent)
            .header("x-b3-sampled", "1")
            .reply()
            .await;
        reply.assert_denied(401, "missing_token");

        let (_, span) = collector.span_of_trace(&trace_id).await;
        assert_eq!(
            span.parent_span_id,
            hex_bytes(&parent),
            "parent is the client's span"
        );
        assert_eq!(
            attribute(&span, "sessiongate.decision").as_deref(),
            Some("deny")
        );
        assert_eq!(
            attribute(&span, "sessiongate.reason").as_deref(),
            Some("missing_token")
        );
        assert_eq!(
            attribute(&span, "sessiongate.route").as_deref(),
            Some("orders-read")
        );
    });
}

#[test]
fn the_single_b3_header_is_continued_too() {
    run(async {
        let (stack, collector) = traced_stack().await;
        let trace_id = unique_hex(32);
        let parent = unique_hex(16);
        let reply = stack
            .get(Frontend, "/orders/7")
            .bearer_auth(token().scope("profile").sign())
            .header("b3", format!("{trace_id}-{parent}-1"))
            .reply()
            .await;
        reply.assert_denied(403, "insufficient_scope");

        let (_, span) = collector.span_of_trace(&trace_id).await;
        assert_eq!(span.parent_span_id, hex_bytes(&parent));
        assert_eq!(
            attribute(&span, "sessiongate.decision").as_deref(),
            Some("deny")
        );
        assert_eq!(
            attribute(&span, "sessiongate.reason").as_deref(),
            Some("insufficient_scope")
        );
    });
}

#[test]
fn a_request_the_caller_chose_not_to_sample_exports_no_span() {
    run(async {
        let (stack, collector) = traced_stack().await;
        let unsampled = unique_hex(32);
        stack
            .get(Frontend, "/orders/7")
            .header(
                "traceparent",
                format!("00-{unsampled}-{}-00", unique_hex(16)),
            )
            .reply()
            .await
            .assert_denied(401, "missing_token");
        // A sampled request sent after it is exported; the unsampled one, queued before it in
        // the same batch if it had been recorded, must not be there.
        let sampled = unique_hex(32);
        stack
            .get(Frontend, "/orders/7")
            .header("traceparent", format!("00-{sampled}-{}-01", unique_hex(16)))
            .reply()
            .await
            .assert_denied(401, "missing_token");
        collector.span_of_trace(&sampled).await;
        let wanted = hex_bytes(&unsampled);
        assert!(
            !collector
                .0
                .spans
                .lock()
                .unwrap()
                .iter()
                .any(|(_, span)| span.trace_id == wanted),
            "the caller's sampled=0 decision stands"
        );
    });
}

/// Without Envoy, so nothing but sessiongate's own shutdown is timed: the batch schedule is set
/// to ten minutes, so only the flush on SIGTERM can deliver the span before the process exits.
#[test]
fn spans_still_queued_are_exported_on_sigterm() {
    run(async {
        let (collector, addr) = Collector::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(support::tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
        let config = dir.path().join("sessiongate.yaml");
        let yaml = format!(
            "{}\ntelemetry:\n  otlp_endpoint: \"http://{addr}\"\n",
            policy::sessiongate_yaml(None)
        );
        std::fs::write(&config, yaml).unwrap();
        let (mut process, mut lines) = ChildProcess::spawn(
            "sessiongate",
            &support::sessiongate::binary(),
            [
                "serve".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--log-format".as_ref(),
                "json".as_ref(),
            ],
            dir.path(),
            &[("RUST_LOG", "info"), ("OTEL_BSP_SCHEDULE_DELAY", "600000")],
        );
        let grpc = tokio::time::timeout(SPAN_DEADLINE, async {
            while let Some(line) = lines.recv().await {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let fields = &event["fields"];
                if fields["message"] == "listening" && fields["listener"] == "grpc" {
                    return fields["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("sessiongate did not start\n{}", process.output()));

        let trace_id = unique_hex(32);
        let http = HttpRequest {
            method: "GET".into(),
            path: "/orders/7".into(),
            host: "shop.example".into(),
            headers: [(
                "traceparent".to_owned(),
                format!("00-{trace_id}-{}-01", unique_hex(16)),
            )]
            .into(),
            ..Default::default()
        };
        let check = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttributeRequest {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
            .await
            .expect("connect to sessiongate");
        let answer = client.check(check).await.expect("Check").into_inner();
        assert_ne!(answer.status.map(|s| s.code), Some(0), "denied: no token");
        drop(client);

        // SIGTERM, and wait for the process to be gone.
        process.stop(Duration::from_secs(15));
        assert!(
            process.exited(),
            "sessiongate did not exit\n{}",
            process.output()
        );
        let wanted = hex_bytes(&trace_id);
        let exported = collector
            .0
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|(_, span)| span.trace_id == wanted);
        assert!(
            exported,
            "the queued span was not flushed before exit\n{}",
            process.output()
        );
    });
}

#[test]
fn a_dry_run_denial_is_a_deny_span_marked_dry_run() {
    run(async {
        let (stack, collector) = traced_stack().await;
        let trace_id = unique_hex(32);
        let reply = stack
            .get(Frontend, "/reports/weekly")
            .header(
                "traceparent",
                format!("00-{trace_id}-{}-01", unique_hex(16)),
            )
            .reply()
            .await;
        reply.assert_allowed();

        let (_, span) = collector.span_of_trace(&trace_id).await;
        assert_eq!(
            attribute(&span, "sessiongate.decision").as_deref(),
            Some("deny")
        );
        assert_eq!(
            attribute(&span, "sessiongate.reason").as_deref(),
            Some("missing_token")
        );
        assert_eq!(
            attribute(&span, "sessiongate.route").as_deref(),
            Some("reports")
        );
        assert_eq!(bool_attribute(&span, "sessiongate.dry_run"), Some(true));
    });
}
