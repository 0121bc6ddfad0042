//! The functions Envoy calls (`envoy_dynamic_module_on_*`), exported with C linkage.
//!
//! Envoy 1.40 resolves every hook of an HTTP filter when the filter config is created and
//! refuses the config if one is missing, so the hooks sessiongate has no use for are here too,
//! doing nothing. Each hook that runs Rust code catches panics: a panic unwinding through
//! `extern "C"` would abort Envoy. A panic while judging a request denies it 503 (fail closed).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::abi::{
    self, ABI_VERSION, ConfigScheduler, EnvoyBuffer, FilterConfigEnvoyPtr, FilterEnvoyPtr, Stream,
    headers_status, log_level,
};
use crate::filter::{EnvoyConfig, Filter, FilterConfig, RoutePolicy};
use crate::instance::Instance;
use crate::stats::{FLUSH_COUNTS, Stats};

/// The Envoy version this module is built and tested against; the ABI version alone does not
/// tell 1.40 from a later Envoy that kept it.
pub const SUPPORTED_ENVOY: &str = "1.40";

/// Loaded once per process: reports the ABI version this module was built for. Envoy only
/// warns on a mismatch, so the README says which Envoy versions a build supports.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    ABI_VERSION.as_ptr().cast()
}

/// The text of a filter or per-route config: a `google.protobuf.StringValue` arrives as its
/// raw bytes; Envoy Gateway's `EnvoyExtensionPolicy` sends the same value JSON-encoded (a
/// quoted string), which is unwrapped here.
fn config_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.starts_with('"')
        && let Ok(unquoted) = serde_json::from_str::<String>(text)
    {
        return unquoted.trim().to_owned();
    }
    text.to_owned()
}

/// A `DynamicModuleFilter` config: `config` is the sessiongate YAML file's path (a
/// `google.protobuf.StringValue`). Null refuses the config, with the loader's message logged.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let created = catch_unwind(|| {
        // SAFETY: Envoy's buffer is valid during this hook.
        let path = config_text(unsafe { abi::bytes(config) });
        let path = path.as_str();
        match Instance::for_config(path) {
            Ok(instance) => {
                // SAFETY: `config_envoy` is the config Envoy is creating in this very hook.
                let stats = unsafe { Stats::define(config_envoy) };
                // SAFETY: as above.
                stats.flush_periodically(&instance, unsafe { ConfigScheduler::new(config_envoy) });
                Arc::into_raw(Arc::new(FilterConfig {
                    instance,
                    stats,
                    envoy: EnvoyConfig(config_envoy),
                }))
                .cast::<c_void>()
            }
            Err(message) => {
                abi::log(log_level::ERROR, &format!("sessiongate {path}: {message}"));
                std::ptr::null()
            }
        }
    });
    created.unwrap_or(std::ptr::null())
}

/// The filter config is gone (a listener update replaced it); its instance lives on. Counts
/// not yet flushed go to Envoy now, while its config object is still whole (this hook runs in
/// its destructor, on the main thread, after every stream that used it).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    // SAFETY: `config` came from `Arc::into_raw` in `config_new`, released once here.
    let config = unsafe { Arc::from_raw(config.cast::<FilterConfig>()) };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the Envoy config is being destroyed but still whole; main thread.
        unsafe { config.stats.flush(config.envoy.0) }
    }));
    drop(config);
}

/// Envoy's main thread, asked by [`Stats::flush_periodically`]: hand the counts kept in the
/// module to Envoy's stats.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    event_id: u64,
) {
    if event_id != FLUSH_COUNTS {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `config` is a live `FilterConfig` from `config_new` (Envoy only schedules
        // for a live config); `config_envoy` is its Envoy config, and this is the main thread.
        unsafe { (*config.cast::<FilterConfig>()).stats.flush(config_envoy) }
    }));
}

/// A per-route config: the sessiongate policy (route name) the Envoy route selects.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's buffer is valid during this hook.
    let policy = config_text(unsafe { abi::bytes(config) });
    if policy.is_empty() {
        abi::log(
            log_level::ERROR,
            "sessiongate: a per-route config must name a sessiongate policy (route name)",
        );
        return std::ptr::null();
    }
    Box::into_raw(Box::new(RoutePolicy(policy.into_boxed_str()))).cast()
}

/// A per-route config is gone.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(config: *const c_void) {
    // SAFETY: `config` came from `Box::into_raw` in `per_route_config_new`.
    drop(unsafe { Box::from_raw(config.cast_mut().cast::<RoutePolicy>()) });
}

/// A new request under `config`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: FilterEnvoyPtr,
) -> *const c_void {
    // SAFETY: `config` is a live `FilterConfig` from `config_new` (Envoy keeps it alive while
    // its filters run); the count is raised for the filter's own reference.
    let config = unsafe {
        Arc::increment_strong_count(config.cast::<FilterConfig>());
        Arc::from_raw(config.cast::<FilterConfig>())
    };
    Box::into_raw(Box::new(Filter::new(config))).cast()
}

/// The request's headers: judge it.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: `filter` is this stream's `Filter` from `filter_new`, used only on its worker.
    let filter = unsafe { &mut *filter.cast_mut().cast::<Filter>() };
    // SAFETY: `filter_envoy` is the stream this hook runs for.
    let mut stream = unsafe { Stream::new(filter_envoy) };
    catch_unwind(AssertUnwindSafe(|| filter.on_request_headers(&mut stream))).unwrap_or_else(|_| {
        abi::log(log_level::ERROR, "sessiongate: check panicked; denying");
        // SAFETY: as above; a fresh handle, the panicking one is gone.
        let mut stream = unsafe { Stream::new(filter_envoy) };
        let deny = sessiongate_core::deny::Deny::new(
            sessiongate_core::deny::DenyReason::InternalError,
            "check panicked",
        );
        crate::filter::send_denial(&mut stream, &deny);
        headers_status::STOP_ITERATION
    })
}

/// What a paused request waited for is done: resume it on its worker.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _event_id: u64,
) {
    // SAFETY: as for `request_headers`.
    let filter = unsafe { &mut *filter.cast_mut().cast::<Filter>() };
    // SAFETY: as above.
    let mut stream = unsafe { Stream::new(filter_envoy) };
    if catch_unwind(AssertUnwindSafe(|| filter.on_scheduled(&mut stream))).is_err() {
        abi::log(log_level::ERROR, "sessiongate: resuming a check panicked");
    }
}

/// The request is over.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    // SAFETY: `filter` came from `Box::into_raw` in `filter_new`, destroyed once.
    drop(unsafe { Box::from_raw(filter.cast_mut().cast::<Filter>()) });
}

#[cfg(test)]
mod tests {
    use super::config_text;

    #[test]
    fn a_config_is_read_raw_or_json_quoted_as_envoy_gateway_sends_it() {
        assert_eq!(config_text(b" /etc/sg.yaml\n"), "/etc/sg.yaml");
        assert_eq!(config_text(br#""/etc/sg.yaml""#), "/etc/sg.yaml");
        assert_eq!(config_text(br#""admin""#), "admin");
        assert_eq!(config_text(br#""unterminated"#), r#""unterminated"#);
    }
}

/// Hooks Envoy requires but sessiongate has no use for: the body, trailers, the response,
/// HTTP callouts and streams, watermarks. Each lets the request go on untouched.
mod unused {
    use std::ffi::c_void;

    use super::{EnvoyBuffer, FilterEnvoyPtr};

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: bool,
    ) -> u32 {
        0
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
        _: FilterEnvoyPtr,
        _: *const c_void,
    ) -> u32 {
        0
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: bool,
    ) -> u32 {
        0
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: bool,
    ) -> u32 {
        0
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
        _: FilterEnvoyPtr,
        _: *const c_void,
    ) -> u32 {
        0
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
        _: FilterEnvoyPtr,
        _: *const c_void,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
        _: u32,
        _: *mut c_void,
        _: usize,
        _: *mut EnvoyBuffer,
        _: usize,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
        _: *mut c_void,
        _: usize,
        _: bool,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
        _: *const EnvoyBuffer,
        _: usize,
        _: bool,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
        _: *mut c_void,
        _: usize,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
        _: FilterEnvoyPtr,
        _: *const c_void,
        _: u64,
        _: u32,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
        _: FilterEnvoyPtr,
        _: *const c_void,
    ) {
    }

    #[unsafe(no_mangle)]
    extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
        _: FilterEnvoyPtr,
        _: *const c_void,
    ) {
    }
}
