//! Continuing the caller's trace: the parent span context carried by a request's headers.
//!
//! Envoy forwards the client's (or its own tracer's) trace headers to ext_authz inside the
//! `CheckRequest`, so the Check span can hang under the request's trace. Two formats are in
//! use in meshes: W3C Trace Context (`traceparent` / `tracestate`), which OpenTelemetry's own
//! propagator reads, and Zipkin's B3 (`b3`, or `x-b3-traceid` / `x-b3-spanid` /
//! `x-b3-sampled` / `x-b3-flags`), which Istio's and many Envoy deployments' Zipkin tracers
//! send. B3 is read here by hand: it is a few lines, where the Zipkin crate would bring an
//! HTTP client along. W3C wins when both are present and valid, since it is the newer
//! standard and carries `tracestate`.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The parent context of a request whose headers `header` looks up (by lower-case name);
/// an empty context (the Check span becomes a root) when no format carries a valid one.
pub fn parent_context<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Context {
    let w3c = TraceContextPropagator::new().extract(&Headers(&header));
    if w3c.span().span_context().is_valid() {
        return w3c;
    }
    match b3(&header) {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    }
}

/// Adapts a header lookup to OpenTelemetry's [`Extractor`].
struct Headers<'f, F>(&'f F);

impl<'a: 'f, 'f, F: Fn(&str) -> Option<&'a str>> Extractor for Headers<'f, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    /// Only baggage propagators enumerate keys; trace context never does.
    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The B3 context: the single `b3` header first (it is what newer Zipkin tracers send),
/// else the multi-header form.
fn b3<'a>(header: &impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
    if let Some(single) = header("b3") {
        return b3_single(single);
    }
    let trace_id = trace_id(header("x-b3-traceid")?)?;
    let span_id = span_id(header("x-b3-spanid")?)?;
    // `x-b3-flags: 1` is "debug", which implies sampled; an absent decision is deferred to us.
    let sampled = if header("x-b3-flags") == Some("1") {
        true
    } else {
        match header("x-b3-sampled") {
            None => true,
            Some("1" | "true") => true,
            Some("0" | "false") => false,
            Some(_) => return None,
        }
    };
    Some(remote(trace_id, span_id, sampled))
}

/// `b3: {trace id}-{span id}[-{1|0|d}[-{parent span id}]]`. The sampling-only form (`b3: 0`)
/// names no span to continue, so it yields no context.
fn b3_single(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let trace_id = trace_id(parts.next()?)?;
    let span = span_id(parts.next()?)?;
    let sampled = match parts.next() {
        None => true,
        Some("1" | "d") => true,
        Some("0") => false,
        Some(_) => return None,
    };
    // The parent span id, if any, is the caller's business: it only has to be well formed.
    if let Some(parent) = parts.next() {
        span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(remote(trace_id, span, sampled))
}

fn remote(trace_id: TraceId, span_id: SpanId, sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(trace_id, span_id, flags, true, TraceState::default())
}

/// 32 lower-hex digits, or 16 (64-bit Zipkin ids, left-padded with zeros); never all zeros.
fn trace_id(hex: &str) -> Option<TraceId> {
    if !(hex.len() == 32 || hex.len() == 16) || !is_lower_hex(hex) {
        return None;
    }
    let id = TraceId::from_hex(hex).ok()?;
    (id != TraceId::INVALID).then_some(id)
}

/// 16 lower-hex digits, never all zeros.
fn span_id(hex: &str) -> Option<SpanId> {
    if hex.len() != 16 || !is_lower_hex(hex) {
        return None;
    }
    let id = SpanId::from_hex(hex).ok()?;
    (id != SpanId::INVALID).then_some(id)
}

/// `from_hex` alone would also accept a sign or upper case; B3 ids are lower-hex only.
fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn parent(headers: &[(&str, &str)]) -> SpanContext {
        let cx = parent_context(|name| {
            headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
        });
        cx.span().span_context().clone()
    }

    fn is(context: &SpanContext, trace: &str, span: &str, sampled: bool) -> bool {
        context.is_valid()
            && context.is_remote()
            && context.trace_id().to_string() == trace
            && context.span_id().to_string() == span
            && context.is_sampled() == sampled
    }

    #[test]
    fn w3c_traceparent_and_tracestate_are_continued() {
        let got = parent(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("tracestate", "vendor=value"),
        ]);
        assert!(is(&got, TRACE, SPAN, true), "{got:?}");
        assert_eq!(got.trace_state().get("vendor"), Some("value"));
        let unsampled = parent(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
        assert!(is(&unsampled, TRACE, SPAN, false), "{unsampled:?}");
    }

    #[test]
    fn b3_multi_headers_are_continued() {
        let got = parent(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "1"),
        ]);
        assert!(is(&got, TRACE, SPAN, true), "{got:?}");
        let unsampled = parent(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "0"),
        ]);
        assert!(is(&unsampled, TRACE, SPAN, false));
        let debug = parent(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "0"),
            ("x-b3-flags", "1"),
        ]);
        assert!(is(&debug, TRACE, SPAN, true), "debug implies sampled");
    }

    #[test]
    fn b3_64_bit_trace_ids_are_left_padded() {
        let got = parent(&[("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-spanid", SPAN)]);
        assert!(
            is(&got, "0000000000000000a3ce929d0e0e4736", SPAN, true),
            "{got:?}"
        );
    }

    #[test]
    fn b3_single_header_is_continued() {
        let got = parent(&[("b3", &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"))]);
        assert!(is(&got, TRACE, SPAN, true), "{got:?}");
        let bare = parent(&[("b3", &format!("{TRACE}-{SPAN}"))]);
        assert!(
            is(&bare, TRACE, SPAN, true),
            "a deferred decision is ours: sampled"
        );
        let unsampled = parent(&[("b3", &format!("{TRACE}-{SPAN}-0"))]);
        assert!(is(&unsampled, TRACE, SPAN, false));
    }

    #[test]
    fn w3c_wins_over_b3() {
        let other = "0af7651916cd43dd8448eb211c80319c";
        let got = parent(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("b3", &format!("{other}-{SPAN}-1")),
        ]);
        assert!(is(&got, TRACE, SPAN, true), "{got:?}");
    }

    #[test]
    fn malformed_or_absent_context_starts_a_new_trace() {
        for headers in [
            vec![],
            vec![("b3", "0")],
            vec![("b3", "not-a-context")],
            vec![("b3", &*format!("{TRACE}-{SPAN}-x"))],
            vec![
                ("x-b3-traceid", "00000000000000000000000000000000"),
                ("x-b3-spanid", SPAN),
            ],
            vec![
                ("x-b3-traceid", "+bf92f3577b34da6a3ce929d0e0e4736"),
                ("x-b3-spanid", SPAN),
            ],
            vec![("x-b3-traceid", TRACE), ("x-b3-spanid", "00F067AA0BA902B7")],
            vec![("x-b3-traceid", TRACE)],
            vec![("traceparent", "00-zz-00f067aa0ba902b7-01")],
        ] {
            assert!(!parent(&headers).is_valid(), "{headers:?}");
        }
    }
}
