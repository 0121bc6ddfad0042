//! The CLI's side of the admin API (`sessiongate admin revoke|list|explain`): connecting with
//! the admin credential, turning command-line values into requests, and printing answers for
//! humans. The command-line parsing itself is in `main.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::convert::describe_selector;
use super::proto;
use super::proto::admin_client::AdminClient;

/// Default `--admin-addr`, the default `admin.listen`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9193";

/// How long the CLI waits for the server to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address or the credential is unusable.
    #[error("{0}")]
    Input(String),
    /// The admin API could not be reached.
    #[error("cannot reach the admin API at {addr}: {message}")]
    Connect {
        /// `--admin-addr`.
        addr: String,
        /// Why.
        message: String,
    },
    /// The server refused or failed the call.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Call(#[from] tonic::Status),
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => "refused (bad or missing admin credential)",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::Unavailable => "unavailable",
        _ => "failed",
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// An authenticated admin client.
pub type Client = AdminClient<InterceptedService<Channel, BearerAuth>>;

/// Connects to the admin API at `addr` (`host:port`) presenting `token`.
pub async fn connect(addr: &str, token: &str) -> Result<Client, ClientError> {
    let mut header: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
        ClientError::Input("the admin token contains characters not allowed in a header".into())
    })?;
    header.set_sensitive(true);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ClientError::Input(format!("--admin-addr {addr}: {e}")))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
        addr: addr.to_owned(),
        message: format!("{e}"),
    })?;
    Ok(AdminClient::with_interceptor(channel, BearerAuth(header)))
}

/// Reads `--issued-before`: `now` (the server's clock: `None`), an RFC 3339 instant, or a
/// duration ago (`15m`, `2h ago`), in milliseconds since the epoch.
pub fn parse_issued_before(text: &str, now: SystemTime) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let instant = if let Ok(instant) = humantime::parse_rfc3339_weak(text) {
        instant
    } else {
        let duration = text.strip_suffix("ago").unwrap_or(text).trim();
        let duration = humantime::parse_duration(duration).map_err(|_| {
            format!(
                "--issued-before `{text}`: write `now`, an RFC 3339 instant \
                 (2026-05-01T12:00:00Z) or a duration ago (`15m`, `2h ago`)"
            )
        })?;
        now.checked_sub(duration)
            .ok_or_else(|| format!("--issued-before `{text}` lies before 1970"))?
    };
    let millis = instant
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("--issued-before `{text}` lies before 1970"))?
        .as_millis();
    Ok(Some(u64::try_from(millis).unwrap_or(u64::MAX)))
}

/// An instant in milliseconds since the epoch as RFC 3339 (seconds).
pub fn format_instant(millis: u64) -> String {
    let instant = UNIX_EPOCH + Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(instant).to_string()
}

/// One revocation in one line.
pub fn format_revocation(revocation: &proto::Revocation) -> String {
    let selector = revocation
        .selector
        .as_ref()
        .map(describe_selector)
        .unwrap_or_default();
    let effect = match proto::Effect::try_from(revocation.effect) {
        Ok(proto::Effect::RequireReauthentication) => "re-authenticate",
        _ => "revoked",
    };
    let scope = if revocation.issuers.is_empty() {
        String::new()
    } else {
        format!(" of tokens of {}", revocation.issuers.join(", "))
    };
    let reason = if revocation.reason.is_empty() {
        String::new()
    } else {
        format!(" reason={:?}", revocation.reason)
    };
    format!(
        "{effect}: {selector}{scope}, issued at or before {} (by {} at {}; forgotten after {}){reason}",
        format_instant(revocation.issued_before_unix_ms),
        revocation.origin,
        format_instant(revocation.recorded_at_unix_ms),
        format_instant(revocation.forget_after_unix_ms),
    )
}

/// What `ExplainSession` answered, one fact per line.
pub fn format_explanation(answer: &proto::ExplainSessionResponse) -> String {
    if !answer.found {
        return "not found: this token's session is not cached here (never seen, evicted or \
                expired)"
            .into();
    }
    let optional = |value: Option<u64>| value.map_or_else(|| "-".into(), format_instant);
    let or_dash = |value: &str| {
        if value.is_empty() {
            "-".to_owned()
        } else {
            value.to_owned()
        }
    };
    let mut lines = vec![
        format!("session:          {}", answer.session),
        format!("issuer:           {}", answer.issuer),
        format!("subject:          {}", or_dash(&answer.subject)),
        format!("scopes:           {}", or_dash(&answer.scopes.join(" "))),
        format!("jti:              {}", or_dash(&answer.jti)),
        format!("sid:              {}", or_dash(&answer.sid)),
        format!("client_id:        {}", or_dash(&answer.client_id)),
        format!("pinned workload:  {}", or_dash(&answer.pinned_workload)),
        format!("signing key:      {}", answer.key_id),
        format!("issued at:        {}", optional(answer.issued_at_unix_ms)),
        format!("authenticated:    {}", optional(answer.auth_time_unix_ms)),
        format!(
            "expires:          {}",
            format_instant(answer.expires_at_unix_ms)
        ),
        format!(
            "first seen:       {}",
            format_instant(answer.first_seen_unix_ms)
        ),
        format!(
            "last allowed:     {}",
            optional(answer.last_allowed_unix_ms)
        ),
    ];
    if answer.would_be_denied.is_empty() {
        lines.push(
            "verdict now:      no session-wide reason to deny (route rules still apply)".into(),
        );
    } else {
        for denial in &answer.would_be_denied {
            lines.push(format!(
                "would be denied:  {} ({})",
                denial.reason, denial.description
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_revocation_names_the_issuers_it_reaches() {
        let mut revocation = proto::Revocation {
            selector: Some(proto::Selector {
                kind: Some(proto::selector::Kind::Email("a@b.c".into())),
            }),
            effect: proto::Effect::Revoke as i32,
            origin: "ssf:https://idp".into(),
            ..Default::default()
        };
        assert!(
            format_revocation(&revocation).starts_with("revoked: email a@b.c, issued"),
            "{}",
            format_revocation(&revocation)
        );
        revocation.issuers = vec!["https://idp".into(), "https://b".into()];
        assert!(
            format_revocation(&revocation)
                .starts_with("revoked: email a@b.c of tokens of https://idp, https://b, issued"),
            "{}",
            format_revocation(&revocation)
        );
    }

    #[test]
    fn issued_before_accepts_now_instants_and_durations_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_issued_before("now", now), Ok(None));
        assert_eq!(
            parse_issued_before("2027-01-15T08:00:00Z", now),
            Ok(Some(1_800_000_000_000))
        );
        assert_eq!(
            parse_issued_before("15m ago", now),
            Ok(Some(1_800_000_000_000 - 900_000))
        );
        assert_eq!(
            parse_issued_before("2h", now),
            Ok(Some(1_800_000_000_000 - 7_200_000))
        );
        assert!(
            parse_issued_before("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }
}
