//! The Envoy 1.40 bootstrap the end-to-end tests run: the deployment issue 2 describes.
//!
//! One HTTPS listener with downstream mTLS; the ext_authz filter calling sessiongate over
//! HTTP/2 gRPC, failing closed; an `/admin` route that tells sessiongate its policy through
//! `context_extensions`; everything else to the echo upstream. Ports are passed in, except the
//! listener's and the admin's, which are 0 so parallel instances never collide; the harness reads
//! the bound ports back from the admin API.

use std::net::SocketAddr;

use super::pki::ServerFiles;

pub struct EnvoyConfig<'a> {
    pub tls: &'a ServerFiles,
    /// Where the ext_authz filter sends `Check` calls.
    pub sessiongate: SocketAddr,
    /// The application behind Envoy.
    pub upstream: SocketAddr,
    /// Settings of the ext_authz filter that some tests change.
    pub ext_authz: ExtAuthzOptions,
    /// In-process mode: the sessiongate config file the dynamic module loads, in place of the
    /// ext_authz filter (and `sessiongate`, then, names no one).
    pub module: Option<&'a std::path::Path>,
}

/// The ext_authz filter settings a test may change from the shipped (fail closed, no body).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExtAuthzOptions {
    /// `failure_mode_allow`: `true` lets every failed Check call through, which is what an
    /// explicit answer to every call must make harmless.
    pub failure_mode_allow: bool,
    /// `with_request_body.max_request_bytes`: the request body goes into the CheckRequest.
    pub max_request_bytes: Option<u32>,
}

impl ExtAuthzOptions {
    /// The filter's extra YAML lines (indented as its other keys) and the listener's
    /// connection buffer limit, which must hold the body Envoy buffers for ext_authz.
    fn render(&self) -> (String, String) {
        match self.max_request_bytes {
            None => (String::new(), String::new()),
            Some(bytes) => (
                format!(
                    "                      with_request_body: {{ max_request_bytes: {bytes}, allow_partial_message: false }}\n"
                ),
                format!("      per_connection_buffer_limit_bytes: {}\n", 2 * bytes),
            ),
        }
    }
}

impl EnvoyConfig<'_> {
    pub fn render(&self) -> String {
        let (with_request_body, buffer_limit) = self.ext_authz.render();
        let (authorization_filter, admin_policy) = match self.module {
            None => (
                format!(
                    r#"                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      grpc_service:
                        envoy_grpc: {{ cluster_name: sessiongate }}
                        timeout: 1s
                      include_peer_certificate: true
                      failure_mode_allow: {failure_mode_allow}
                      status_on_error: {{ code: 503 }}
{with_request_body}"#,
                    failure_mode_allow = self.ext_authz.failure_mode_allow,
                ),
                r#"                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings:
                                context_extensions:
                                  sessiongate.policy: admin
"#
                .to_owned(),
            ),
            Some(config) => (
                format!(
                    r#"                  - name: sessiongate
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
                      dynamic_module_config: {{ name: sessiongate_envoy, do_not_close: true }}
                      filter_name: sessiongate
                      filter_config:
                        "@type": type.googleapis.com/google.protobuf.StringValue
                        value: "{config}"
"#,
                    config = config.display(),
                ),
                r#"                            sessiongate:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute
                              dynamic_module_config: { name: sessiongate_envoy, do_not_close: true }
                              filter_name: sessiongate
                              filter_config:
                                "@type": type.googleapis.com/google.protobuf.StringValue
                                value: admin
"#
                .to_owned(),
            ),
        };
        // In-process mode: an access log beside the sessiongate config, carrying what the module
        // puts in the request's dynamic metadata.
        let access_log = match self.module {
            None => String::new(),
            Some(config) => format!(
                r#"                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: "{}"
                      log_format:
                        text_format_source:
                          inline_string: "%RESPONSE_CODE% %DYNAMIC_METADATA(sessiongate:decision)% %DYNAMIC_METADATA(sessiongate:reason)% %DYNAMIC_METADATA(sessiongate:route)%\n"
"#,
                config.with_file_name("access.log").display()
            ),
        };
        format!(
            r#"# Rendered by tests/support/envoy_config.rs for one end-to-end test stack.
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}

static_resources:
  listeners:
    - name: https
      address:
        socket_address: {{ address: 127.0.0.1, port_value: 0 }}
{buffer_limit}      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {{ filename: "{cert}" }}
                    private_key: {{ filename: "{key}" }}
                validation_context:
                  trusted_ca: {{ filename: "{ca}" }}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
{access_log}                # Normalise the path before ext_authz sees it, so `/x/../orders` or `//orders` cannot
                # select a different sessiongate route than the one the upstream serves.
                normalize_path: true
                merge_slashes: true
                path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT
                codec_type: AUTO
                route_config:
                  name: local
                  virtual_hosts:
                    - name: shop
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: /admin }}
                          route: {{ cluster: upstream }}
                          typed_per_filter_config:
{admin_policy}                        - match: {{ prefix: / }}
                          route: {{ cluster: upstream }}
                http_filters:
{authorization_filter}                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router

  clusters:
    - name: sessiongate
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {{}}
      load_assignment:
        cluster_name: sessiongate
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: {sg_ip}, port_value: {sg_port} }}
    - name: upstream
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: upstream
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: {up_ip}, port_value: {up_port} }}
"#,
            cert = self.tls.cert.display(),
            key = self.tls.key.display(),
            ca = self.tls.ca.display(),
            sg_ip = self.sessiongate.ip(),
            sg_port = self.sessiongate.port(),
            up_ip = self.upstream.ip(),
            up_port = self.upstream.port(),
        )
    }
}
