//! Who is asking: HTTP Basic credentials checked against `[[users]]` (remembered for a while,
//! refusals counted and audited aggregated), and the audit line of a named reader.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use tellijn_config::AuditEvent;
use tellijn_config::campus::Role;
use tellijn_config::metrics::{ReasonLabels, auth_reason};
use tellijn_config::refusals::{Example, kind};

use super::{Api, ApiError, Reader};

/// How long a verified Basic credential is remembered (argon2 is deliberately slow).
pub(super) const CREDENTIAL_TTL: Duration = Duration::from_secs(300);

/// A credential checked recently: SHA-256 of the password, the role, when.
pub(super) type Verified = ([u8; 32], Role, Instant);

/// Checks HTTP Basic credentials, if any, against `[[users]]`.
/// The named user and role, or `None` for an anonymous request. A refusal (401) is counted in
/// `tellijn_auth_failures_total{reason="http_…"}` and audited aggregated, like every login of
/// someone who has not authenticated.
pub(super) async fn authenticate(
    api: &Api,
    headers: &HeaderMap,
) -> Result<Option<(String, Role)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let refuse = |reason: &'static str, user: Option<&str>, message: &str| {
        api.metrics
            .auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
        api.refusals.note(kind::AUTH_FAILURE, reason, None, || {
            Example::new(Some("http"), user, None)
        });
        ApiError::unauthorized(message)
    };
    let malformed = || {
        refuse(
            auth_reason::HTTP_MALFORMED,
            None,
            "send HTTP Basic credentials of a [[users]] entry, or none for the public view",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(malformed)?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (name, password) = text.split_once(':').ok_or_else(malformed)?;
    // A credential verified recently is answered from the cache, before and without waiting
    // for a verification slot.
    let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
    {
        let cache = api.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((d, role, at)) = cache.get(name)
            && *d == digest
            && at.elapsed() < CREDENTIAL_TTL
        {
            return Ok(Some((name.to_owned(), *role)));
        }
    }
    const WRONG: &str = "wrong user name or password";
    let pw = password.to_owned();
    let campus = api.campus();
    let Some(user) = campus.users.iter().find(|u| u.name == name) else {
        // The same deliberately slow hash as for a known user: no user names by timing.
        let hash = tellijn_config::secrets::DUMMY_HASH.to_owned();
        tellijn_config::secrets::verify_password(hash, pw).await;
        return Err(refuse(auth_reason::HTTP_UNKNOWN_USER, Some(name), WRONG));
    };
    let hash = user.password_hash.clone();
    let ok = tellijn_config::secrets::verify_password(hash, pw).await;
    if !ok {
        return Err(refuse(auth_reason::HTTP_BAD_PASSWORD, Some(name), WRONG));
    }
    let mut cache = api.verified.lock().unwrap_or_else(|p| p.into_inner());
    // Only configured users are ever cached: the map is bounded by `[[users]]`.
    cache.insert(name.to_owned(), (digest, user.role, Instant::now()));
    Ok(Some((user.name.clone(), user.role)))
}

/// Checks HTTP Basic credentials, if any, against `[[users]]`; a named user's request for
/// `resource` (the path under `/api/v1/`), reading `tables`, is audited before anything is
/// read (`live` is the current occupancy held in memory).
pub async fn reader(
    api: &Api,
    headers: &HeaderMap,
    resource: &str,
    tables: &[&str],
) -> Result<Reader, ApiError> {
    let Some((name, role)) = authenticate(api, headers).await? else {
        return Ok(Reader::Anonymous);
    };
    if let Err(e) = api
        .audit
        .record_confirmed(AuditEvent::api_read(&name, resource, tables))
    {
        tracing::error!("Writing the audit log failed, refusing an API read: {e}");
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the audit log cannot be written, so no data is read; tell the administrator"
                .to_owned(),
        });
    }
    Ok(Reader::User(role))
}
