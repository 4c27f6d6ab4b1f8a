//! Login: cleartext passwords checked against the argon2id hashes of `[[users]]`, steward only.

use std::fmt::Debug;
use std::sync::Arc;

use super::{LoginRefusal, OnRefusal};
use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::Authentication;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::{Sink, SinkExt};
use tellijn_config::campus::Role;

// Unknown users are verified against the dummy hash every login shares.
use tellijn_config::secrets::{DUMMY_HASH, verify_password};

/// Cleartext-password startup checked against argon2id hashes.
pub struct PasswordStartup {
    /// The logins in force (replaced by a reload).
    pub(super) users: tokio::sync::watch::Receiver<std::sync::Arc<super::server::Users>>,
    pub(super) params: DefaultServerParameterProvider,
    pub(super) keys: RandomPidSecretKeyGenerator,
    pub(super) manager: Arc<ConnectionManager>,
    pub(super) on_refusal: OnRefusal,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for PasswordStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let user = LoginInfo::from_client_info(client)
                    .user()
                    .unwrap_or_default()
                    .to_owned();
                let peer = client.socket_addr();
                let entry = self.users.borrow().get(&user).cloned();
                let Some((hash, role)) = entry else {
                    // Spend the same effort as for a known user: no user enumeration by timing.
                    verify_password(DUMMY_HASH.to_owned(), "not the password".to_owned()).await;
                    (self.on_refusal)(&user, LoginRefusal::UnknownUser, peer);
                    return Err(PgWireError::InvalidPassword(user));
                };
                let password = pwd.password;
                let ok = verify_password(hash, password).await;
                if !ok {
                    (self.on_refusal)(&user, LoginRefusal::BadPassword, peer);
                    return Err(PgWireError::InvalidPassword(user));
                }
                if role != Role::Steward {
                    (self.on_refusal)(&user, LoginRefusal::NoSqlRole, peer);
                    return Err(fatal(
                        "42501",
                        format!(
                            "user \"{user}\" has role viewer: the HTTP API (/api/v1) is open to it, SQL only to role steward"
                        ),
                    ));
                }
                let (pid, secret_key) = self.keys.generate(client);
                client.set_pid_and_secret_key(pid, secret_key);
                let (handle, guard) = self.manager.register(pid, client.pid_and_secret_key().1);
                client.session_extensions().insert(handle);
                client.session_extensions().insert(guard);
                finish_authentication(client, &self.params).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
