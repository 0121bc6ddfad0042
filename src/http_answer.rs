//! Reading another server's HTTP answer within a size bound, and naming what went wrong: shared
//! by the key sources (JWKS, discovery) and the introspection client, which both ask servers
//! sessiongate does not control.

/// The body of a `200 OK` `response`, refused once it would exceed `max` bytes: checked against
/// `Content-Length` first, then while it streams, so a lying or absent length never makes
/// sessiongate hold more than `max`. The error says what happened, for the caller's message.
pub async fn bounded_body(response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let too_large = || format!("larger than {max} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large());
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// "error sending request: connection refused", not just the outermost layer (reqwest's
/// errors name the URL, never a body).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
