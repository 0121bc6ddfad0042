//! OpenTelemetry traces: one span per Check, exported over OTLP/gRPC, continuing the trace
//! the request belongs to.
//!
//! A trace through the mesh otherwise shows a gap where Envoy waited for sessiongate; with
//! this span an operator sees how long the check took and why it denied, under the request's
//! own trace. Export must never slow a Check or fail it: spans go to a bounded in-memory queue
//! drained by the SDK's batch processor on its own thread; when the collector is slow or down
//! the queue fills and further spans are dropped (the SDK logs it), and a failed export is
//! only logged. On shutdown the queue is flushed.
//!
//! - [`propagation`]: reading W3C and B3 trace context from the request's headers.

pub mod propagation;

use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span,
};

use crate::config::TelemetrySettings;
use sessiongate_check::gate::Outcome;
use sessiongate_core::deny::DenyReason;

/// How long one export may take before it is abandoned (and logged); it runs off the Check
/// path, so this only bounds how stale a backlog gets and how long shutdown can wait.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the span of one `Check` call.
pub const CHECK_SPAN_NAME: &str = "sessiongate.check";

/// Span attribute: `allow` or `deny`.
pub const ATTR_DECISION: &str = "sessiongate.decision";
/// Span attribute: the stable deny reason (absent on allow).
pub const ATTR_REASON: &str = "sessiongate.reason";
/// Span attribute: the matched route's name.
pub const ATTR_ROUTE: &str = "sessiongate.route";
/// Span attribute: `true` when the route is in dry-run, so a `deny` was not enforced.
pub const ATTR_DRY_RUN: &str = "sessiongate.dry_run";
/// Span attribute: the session's 16-character hash, the same one logs and
/// `x-sessiongate-session` carry, so a span can be joined to them. Never the token or subject.
pub const ATTR_SESSION: &str = "sessiongate.session";

/// Could not set up the exporter.
#[derive(Debug, thiserror::Error)]
#[error("setting up the OTLP trace exporter for {endpoint}: {message}")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

/// The trace pipeline: a tracer for Check spans and the provider whose batch processor exports
/// them. Cheap to clone (both are handles).
#[derive(Clone, Debug)]
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Tracing {
    /// The pipeline for `settings`, or `None` when no `otlp_endpoint` is configured (then no
    /// span is ever created, so tracing costs nothing). Must run inside the tokio runtime: the
    /// gRPC channel is bound to it. The collector is connected lazily, so an unreachable one
    /// does not stop start-up.
    pub fn start(settings: &TelemetrySettings) -> Result<Option<Tracing>, TelemetryError> {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|error| TelemetryError {
                endpoint: endpoint.clone(),
                message: error.to_string(),
            })?;
        // The default batch settings (2048 queued spans, batches of 512 every 5 s) honour the
        // standard OTEL_BSP_* variables, so operators can tune them without a config key.
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(BatchConfigBuilder::default().build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // The caller's sampling decision stands; a request without trace context is
            // sampled, since a Check span is cheap and the interesting ones are rare denials.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
        tracing::info!(%endpoint, service = %settings.service_name, "exporting traces over OTLP/gRPC");
        Ok(Some(Tracing { tracer, provider }))
    }

    /// Starts the span of one Check, as a child of the context in the request's headers
    /// (looked up by lower-case name), if any.
    pub fn begin<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> CheckSpan {
        let parent = propagation::parent_context(header);
        let span = self
            .tracer
            .span_builder(CHECK_SPAN_NAME)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", "envoy.service.auth.v3.Authorization"),
                KeyValue::new("rpc.method", "Check"),
            ])
            .start_with_context(&self.tracer, &parent);
        CheckSpan(span)
    }

    /// Exports what is queued and stops the exporter, waiting at most `FLUSH_TIMEOUT`. Runs
    /// on a blocking thread: the SDK waits synchronously for its export thread.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("trace exporter flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "flushing the trace exporter failed"),
            Err(error) => tracing::warn!(%error, "flushing the trace exporter panicked"),
        }
    }
}

/// How one Check ended, as its span records it.
#[derive(Debug, Clone, Copy)]
pub struct CheckEnd<'a> {
    /// `allow` or `deny`.
    pub decision: &'a str,
    /// The deny reason; `None` on allow.
    pub reason: Option<&'a str>,
    /// The matched route, if any.
    pub route: Option<&'a str>,
    /// The session's short hash, if a token was verified.
    pub session: Option<&'a str>,
    /// sessiongate failed to judge (its own fault, not the caller's): the span is an error.
    pub internal_error: bool,
    /// The route is in dry-run: a `deny` was reported but not enforced.
    pub dry_run: bool,
}

/// The span of one Check in flight; [`CheckSpan::finish`] records the outcome and ends it.
/// Dropped without finishing (the call was cancelled), it still ends, without outcome.
#[derive(Debug)]
pub struct CheckSpan(Span);

impl CheckSpan {
    /// Records `end` on the span and ends it (it is then queued for export).
    pub fn finish(mut self, end: CheckEnd<'_>) {
        let span = &mut self.0;
        span.set_attribute(KeyValue::new(ATTR_DECISION, end.decision.to_owned()));
        if let Some(reason) = end.reason {
            span.set_attribute(KeyValue::new(ATTR_REASON, reason.to_owned()));
        }
        if let Some(route) = end.route {
            span.set_attribute(KeyValue::new(ATTR_ROUTE, route.to_owned()));
        }
        if let Some(session) = end.session {
            span.set_attribute(KeyValue::new(ATTR_SESSION, session.to_owned()));
        }
        if end.dry_run {
            span.set_attribute(KeyValue::new(ATTR_DRY_RUN, true));
        }
        // A denial is the service working: only our own failure marks the span as an error.
        if end.internal_error {
            span.set_status(Status::error("sessiongate failed to judge the request"));
        }
        span.end();
    }
}

/// Ends `span` (when tracing is on) with the gate's `outcome`, judged on a dry-run route or
/// not.
pub fn record(span: Option<CheckSpan>, outcome: &Outcome, dry_run: bool) {
    let Some(span) = span else { return };
    let session = outcome.session.as_ref().map(|(key, _)| key.short());
    let reason = outcome.verdict.as_ref().err().map(|deny| deny.reason);
    span.finish(CheckEnd {
        decision: if reason.is_some() { "deny" } else { "allow" },
        reason: reason.map(DenyReason::as_str),
        route: outcome.route.as_deref(),
        session: session.as_ref().map(|s| s.as_str()),
        internal_error: reason == Some(DenyReason::InternalError),
        dry_run,
    });
}

/// Ends `span` (when tracing is on) for a request denied before the gate judged it: a bad
/// request, or sessiongate's own failure.
pub fn record_denied(span: Option<CheckSpan>, reason: DenyReason) {
    let Some(span) = span else { return };
    span.finish(CheckEnd {
        decision: "deny",
        reason: Some(reason.as_str()),
        route: None,
        session: None,
        internal_error: reason == DenyReason::InternalError,
        dry_run: false,
    });
}
