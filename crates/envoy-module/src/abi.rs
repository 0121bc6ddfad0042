//! The part of Envoy's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`,
//! version [`ABI_VERSION`], Envoy 1.40) this module uses, declared by hand: Envoy's own Rust SDK
//! is not published. Only what is called is declared; every type mirrors the C header exactly
//! (`#[repr(C)]`, enums passed as plain integers, so an unknown value from Envoy is never
//! undefined behaviour).
//!
//! [`Stream`] wraps the per-request pointer Envoy hands to the hooks with safe methods; it is
//! only ever used inside a hook, on the worker thread that owns the stream.

use std::ffi::{c_char, c_void};
use std::marker::PhantomData;

/// The ABI version this module is built against: Envoy 1.40's `ENVOY_DYNAMIC_MODULES_ABI_VERSION`.
/// Envoy compares it with its own at load and only warns on a mismatch, so the module checks
/// the Envoy version itself too (see [`crate::hooks`]).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's per-stream filter object.
pub type FilterEnvoyPtr = *mut c_void;
/// Envoy's filter-config object (metrics are defined through it).
pub type FilterConfigEnvoyPtr = *mut c_void;
/// A scheduler posting an event back to a stream's worker thread.
pub type SchedulerPtr = *mut c_void;
/// A scheduler posting an event to Envoy's main thread for a filter config.
pub type ConfigSchedulerPtr = *mut c_void;

/// Bytes owned by Envoy, valid until the current hook returns (or the next header setter).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    /// First byte, or null.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

/// Bytes owned by the module, lent to Envoy for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    /// First byte, or null.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl ModuleBuffer {
    /// Lends `bytes`.
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer (`set_header` with it removes the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// One header, as Envoy lists them (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// One header the module sends (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

impl ModuleHeader {
    /// Lends `key: value`.
    pub fn of(key: &str, value: &str) -> ModuleHeader {
        ModuleHeader {
            key_ptr: key.as_ptr().cast(),
            key_length: key.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

/// An unfilled [`EnvoyHeader`].
const EMPTY_HEADER: EnvoyHeader = EnvoyHeader {
    key_ptr: std::ptr::null(),
    key_length: 0,
    value_ptr: std::ptr::null(),
    value_length: 0,
};

/// `envoy_dynamic_module_type_http_header_type`: the request's headers.
const REQUEST_HEADER: u32 = 0;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status`.
pub mod headers_status {
    /// Go on to the next filter.
    pub const CONTINUE: u32 = 0;
    /// Stop here (after a local reply).
    pub const STOP_ITERATION: u32 = 1;
    /// Pause the request, buffering what follows, until `continue_decoding`.
    pub const STOP_ALL_ITERATION_AND_BUFFER: u32 = 3;
}

/// `envoy_dynamic_module_type_attribute_id` values read here (positional in the C enum; checked
/// against Envoy 1.40 over mTLS).
pub mod attribute {
    /// The peer certificate's first URI SAN (the SPIFFE ID).
    pub const URI_SAN_PEER_CERTIFICATE: u32 = 37;
    /// SHA-256 of the peer certificate's DER, 64 lower-case hex digits.
    pub const SHA256_PEER_CERTIFICATE_DIGEST: u32 = 38;
    /// The downstream peer's address.
    pub const SOURCE_ADDRESS: u32 = 24;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    /// Information.
    pub const INFO: u32 = 2;
    /// Something is wrong but the module goes on.
    pub const WARN: u32 = 3;
    /// The module cannot do what was asked.
    pub const ERROR: u32 = 4;
}

unsafe extern "C" {
    fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *const ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_get_most_specific_route_config(
        filter: FilterEnvoyPtr,
    ) -> *const c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: FilterConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: FilterEnvoyPtr,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// `envoy_dynamic_module_type_metrics_result::Success`.
const METRICS_SUCCESS: u32 = 0;

/// A metric Envoy defined for this module (its id), with its number of labels.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    id: usize,
    labels: usize,
}

/// What kind of metric to define.
#[derive(Clone, Copy, Debug)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A distribution of values (Envoy's histogram buckets).
    Histogram,
}

/// Defines a metric `name` with `labels` in Envoy's stats (only possible while Envoy creates the
/// filter config, i.e. inside `on_http_filter_config_new`); `None` if Envoy refused it.
///
/// # Safety
/// `config` is the filter config Envoy passed to the running `on_http_filter_config_new`.
pub unsafe fn define_metric(
    config: FilterConfigEnvoyPtr,
    kind: MetricKind,
    name: &str,
    labels: &[&str],
) -> Option<Metric> {
    let names: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    // SAFETY: `config` is the filter config being created; the buffers are lent for the call.
    let result = unsafe {
        match kind {
            MetricKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter(
                config,
                ModuleBuffer::of(name.as_bytes()),
                names.as_ptr(),
                names.len(),
                &mut id,
            ),
            MetricKind::Histogram => {
                envoy_dynamic_module_callback_http_filter_config_define_histogram(
                    config,
                    ModuleBuffer::of(name.as_bytes()),
                    names.as_ptr(),
                    names.len(),
                    &mut id,
                )
            }
        }
    };
    (result == METRICS_SUCCESS).then_some(Metric {
        id,
        labels: labels.len(),
    })
}

/// Adds `by` to `counter` under `values` (one per label it was defined with), outside any
/// stream: on Envoy's main thread, where the module flushes the counts it kept.
///
/// # Safety
/// `config` is a live filter config (not yet past `on_http_filter_config_destroy`), and the
/// call is made on Envoy's main thread (in a config hook).
pub unsafe fn increment_in_config(
    config: FilterConfigEnvoyPtr,
    counter: Metric,
    values: &[&str],
    by: u64,
) {
    if values.len() != counter.labels {
        return;
    }
    let values: Vec<ModuleBuffer> = values
        .iter()
        .map(|v| ModuleBuffer::of(v.as_bytes()))
        .collect();
    // SAFETY: the caller's guarantee; the buffers are lent for the call.
    unsafe {
        envoy_dynamic_module_callback_http_filter_config_increment_counter(
            config,
            counter.id,
            values.as_ptr(),
            values.len(),
            by,
        );
    }
}

/// Writes `message` to Envoy's `dynamic_modules` log at `level` (any thread).
pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer lends `message` for the duration of the call, as the ABI expects.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// The stream a hook was called for. Valid only during that hook, on its worker thread: the
/// lifetime ties it to the hook's frame, and every header value read borrows the `Stream`, so
/// the borrow checker forbids a setter (`&mut self`, which invalidates Envoy's buffers) while
/// one is alive.
pub struct Stream<'hook> {
    ptr: FilterEnvoyPtr,
    _hook: PhantomData<&'hook ()>,
}

impl<'hook> Stream<'hook> {
    /// # Safety
    /// `ptr` is the filter pointer Envoy passed to the running hook.
    pub unsafe fn new(ptr: FilterEnvoyPtr) -> Stream<'hook> {
        Stream {
            ptr,
            _hook: PhantomData,
        }
    }

    /// Every value of request header `name` (lower case), in order.
    pub fn request_header_values(&self, name: &str) -> Values<'_> {
        let mut first = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        let mut count = 0usize;
        // SAFETY: `ptr` is this hook's stream; the out-pointers are valid locals.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                &mut first,
                0,
                &mut count,
            )
        };
        if !found {
            return Values::None;
        }
        // SAFETY: Envoy's buffer lives until the hook returns or a header is set; the value
        // borrows `self`, and setters take `&mut self`, so none runs while it is alive.
        let value = unsafe { bytes(first) };
        if count > 1 {
            Values::Several
        } else {
            Values::One(value)
        }
    }

    /// The first value of request header `name`, if any and UTF-8.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        match self.request_header_values(name) {
            Values::One(value) => std::str::from_utf8(value).ok(),
            Values::Several | Values::None => None,
        }
    }

    /// The names of the request headers sessiongate owns (`x-sessiongate-*`) that the client
    /// sent, copied: setting a header invalidates Envoy's buffers. Nothing is allocated when
    /// there are none, which is every honest request.
    pub fn owned_request_headers(&self) -> Vec<String> {
        // SAFETY: `ptr` is this hook's stream.
        let size = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.ptr, REQUEST_HEADER)
        };
        let mut headers = [EMPTY_HEADER; 64];
        let mut spilled = Vec::new();
        let listed = if size <= headers.len() {
            &mut headers[..size]
        } else {
            spilled.resize(size, EMPTY_HEADER);
            &mut spilled[..]
        };
        // SAFETY: `listed` has room for the `size` entries Envoy writes.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.ptr,
                REQUEST_HEADER,
                listed.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        listed
            .iter()
            .filter_map(|header| {
                // SAFETY: Envoy filled the entry; its key lives until the hook returns.
                let key = unsafe {
                    bytes(EnvoyBuffer {
                        ptr: header.key_ptr,
                        length: header.key_length,
                    })
                };
                if !sessiongate_check::answer::is_owned_header(key) {
                    return None;
                }
                std::str::from_utf8(key).ok().map(str::to_owned)
            })
            .collect()
    }

    /// Replaces every value of request header `name` with `value`.
    pub fn set_request_header(&mut self, name: &str, value: &str) {
        // SAFETY: `ptr` is this hook's stream; the buffers are lent for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Adds request header `name: value`, for a header the request does not carry (cheaper than
    /// [`Stream::set_request_header`], which first removes any value).
    pub fn add_request_header(&mut self, name: &str, value: &str) {
        // SAFETY: `ptr` is this hook's stream; the buffers are lent for the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Removes every value of request header `name`.
    pub fn remove_request_header(&mut self, name: &str) {
        // SAFETY: as above; a null value removes the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::NULL,
            );
        }
    }

    /// Answers the request locally (the hook then returns `STOP_ITERATION`).
    pub fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        details: &str,
    ) {
        let headers: Vec<ModuleHeader> = headers
            .iter()
            .map(|(key, value)| ModuleHeader::of(key, value))
            .collect();
        // SAFETY: every buffer is lent for the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::of(details.as_bytes()),
            );
        }
    }

    /// A string attribute of the request or connection (see [`attribute`]), if present.
    pub fn attribute(&self, id: u32) -> Option<&str> {
        let mut result = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: `ptr` is this hook's stream; `result` is a valid local.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr,
                id,
                &mut result,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: Envoy's buffer lives until the hook returns.
        std::str::from_utf8(unsafe { bytes(result) }).ok()
    }

    /// The per-route config object this module created for the matched route, if any.
    pub fn route_config(&self) -> *const c_void {
        // SAFETY: `ptr` is this hook's stream.
        unsafe { envoy_dynamic_module_callback_get_most_specific_route_config(self.ptr) }
    }

    /// A handle that wakes this stream's worker from any thread ([`Scheduler::commit`]).
    pub fn scheduler(&self) -> Scheduler {
        // SAFETY: `ptr` is this hook's stream; the scheduler outlives it safely (Envoy ignores
        // a commit for a stream that is gone).
        Scheduler(unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) })
    }

    /// Sets the request's dynamic metadata `namespace.key` to `value`, which access logs
    /// (`%DYNAMIC_METADATA(namespace:key)%`) and tracers' custom tags can read.
    pub fn set_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        // SAFETY: `ptr` is this hook's stream; the buffers are lent for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.ptr,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Records `value` in `histogram` (defined without labels).
    pub fn record(&self, histogram: Metric, value: u64) {
        // SAFETY: `ptr` is this hook's stream.
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.ptr,
                histogram.id,
                std::ptr::null(),
                0,
                value,
            );
        }
    }

    /// Resumes a request paused with `STOP_ALL_ITERATION_AND_BUFFER`.
    pub fn continue_decoding(&mut self) {
        // SAFETY: `ptr` is this hook's stream, and this runs inside `on_http_filter_scheduled`.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }
}

/// The values of one header.
pub enum Values<'hook> {
    /// Absent.
    None,
    /// Exactly one value.
    One(&'hook [u8]),
    /// More than one.
    Several,
}

/// Posts an event to a stream's worker thread; usable from any thread.
pub struct Scheduler(SchedulerPtr);

// SAFETY: Envoy documents `scheduler_commit` and `scheduler_delete` as callable from any thread.
unsafe impl Send for Scheduler {}
// SAFETY: as above; the handle has no interior state on this side.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    /// Calls `on_http_filter_scheduled(event_id)` on the stream's worker, unless the stream is
    /// gone by then.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: the scheduler is live until dropped.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event_id) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted once.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// Posts an event to Envoy's main thread for one filter config (`on_http_filter_config_scheduled`);
/// usable from any thread. Envoy holds the config weakly: a commit after the config is gone is
/// a no-op.
pub struct ConfigScheduler(ConfigSchedulerPtr);

// SAFETY: Envoy's config scheduler posts to the main thread's dispatcher, which is thread-safe;
// commit and delete are callable from any thread.
unsafe impl Send for ConfigScheduler {}
// SAFETY: as above; the handle has no interior state on this side.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    /// A scheduler for `config`.
    ///
    /// # Safety
    /// `config` is a live filter config.
    pub unsafe fn new(config: FilterConfigEnvoyPtr) -> ConfigScheduler {
        // SAFETY: the caller's guarantee.
        ConfigScheduler(unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_new(config)
        })
    }

    /// Calls `on_http_filter_config_scheduled(event_id)` on the main thread, unless the config
    /// is gone by then.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: the scheduler is live until dropped.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id)
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: created by `config_scheduler_new`, deleted once.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// The bytes of an Envoy buffer.
///
/// # Safety
/// The buffer must be valid for `'a`.
pub unsafe fn bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees the buffer is valid; it is `length` bytes from `ptr`.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast(), buffer.length) }
}
