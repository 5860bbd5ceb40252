//! Who may connect: trust, SCRAM-SHA-256 (RFC 5802 / RFC 7677) or a cleartext password
//! over TLS, checked against SCRAM verifiers in the Postgres format
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64). The proxy never
//! holds a password: a verifier lets it check a proof, not produce one.
//!
//! A wrong password and an unknown user look the same to the client (28P01, the same
//! message): an unknown user goes through the exchange with a made-up verifier.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::config::{AuthMethod, Front, UserEntry};
use crate::scram::{DEFAULT_ITERATIONS, ScramServer, Verifier, hmac_sha256, rand_bytes};

/// Session metadata key set to "on" for a read-only user.
pub const METADATA_READ_ONLY: &str = "vectorgate.read_only";

/// The users the proxy knows, by name.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, (Verifier, bool)>,
    /// Salts and keys of unknown users are derived from this, so that asking twice
    /// gives the same salt (as for a real user).
    mock_secret: [u8; 32],
}

impl Users {
    pub fn new(entries: &[UserEntry]) -> Users {
        let users = entries
            .iter()
            .filter_map(|u| {
                Verifier::parse(&u.password)
                    .ok()
                    .map(|v| (u.name.clone(), (v, u.read_only)))
            })
            .collect();
        Users {
            users,
            mock_secret: rand_bytes(),
        }
    }

    /// The user's verifier and read-only flag, or a made-up verifier nobody matches.
    fn lookup(&self, name: &str) -> (Verifier, bool, bool) {
        match self.users.get(name) {
            Some((v, ro)) => (v.clone(), *ro, true),
            None => {
                let seed = hmac_sha256(&self.mock_secret, name.as_bytes());
                let mut v = Verifier {
                    iterations: DEFAULT_ITERATIONS,
                    salt: seed[..16].to_vec(),
                    stored_key: [0; 32],
                    server_key: [0; 32],
                };
                v.stored_key = hmac_sha256(&seed, b"stored");
                v.server_key = hmac_sha256(&seed, b"server");
                (v, false, false)
            }
        }
    }
}

/// What one connection awaits next in its authentication.
enum AuthState {
    ScramFirst,
    ScramFinal(Box<ScramServer>, bool, bool),
    Password,
}

/// Per-connection authentication state, kept in the session extensions.
#[derive(Default)]
struct AuthSlot(Mutex<Option<AuthState>>);

/// The startup handler: TLS requirement, authentication, then the server parameters.
/// The database a connection's startup packet named, as the session is to use it.
pub struct Database {
    pub engine: Arc<crate::sql::Engine>,
    /// Its name, when it is one CREATE DATABASE made.
    pub name: Option<String>,
}

pub struct Startup {
    pub databases: Arc<crate::databases::Databases>,
    pub connections: Arc<ConnectionManager>,
    pub auth: AuthMethod,
    pub tls_required: bool,
    pub users: Users,
    pub pids: RandomPidSecretKeyGenerator,
    pub parameters: DefaultServerParameterProvider,
}

impl Startup {
    pub fn new(
        front: &Front,
        connections: Arc<ConnectionManager>,
        databases: Arc<crate::databases::Databases>,
    ) -> Startup {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = crate::server_version().to_string();
        // What `SHOW` answers, and Postgres' defaults.
        parameters.date_style = "ISO, MDY".to_string();
        parameters.time_zone = "UTC".to_string();
        Startup {
            databases,
            connections,
            auth: front.auth,
            tls_required: front.tls_required,
            users: Users::new(&front.users),
            pids: RandomPidSecretKeyGenerator::default(),
            parameters,
        }
    }
}

fn fatal(code: &str, message: String, hint: Option<&str>) -> PgWireError {
    let mut info = ErrorInfo::new("FATAL".into(), code.into(), message);
    info.hint = hint.map(str::to_string);
    PgWireError::UserError(Box::new(info))
}

fn auth_failed(user: &str) -> PgWireError {
    crate::metrics::global().auth_failures.inc();
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
        None,
    )
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                if self.tls_required && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server accepts only connections that use TLS".into(),
                        Some("connect with sslmode=require (or verify-full)"),
                    ));
                }
                let (pid, key) = self.pids.generate(client);
                client.set_pid_and_secret_key(pid, key);
                match self.auth {
                    AuthMethod::Trust => return self.accept(client, false).await,
                    AuthMethod::Password if !client.is_secure() => {
                        return Err(fatal(
                            "28000",
                            format!(
                                "password authentication for user \"{user}\" needs a TLS connection"
                            ),
                            Some("connect with sslmode=require"),
                        ));
                    }
                    AuthMethod::Password => {
                        set_state(client, AuthState::Password);
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::CleartextPassword,
                            ))
                            .await?;
                    }
                    AuthMethod::Scram => {
                        set_state(client, AuthState::ScramFirst);
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                                vec!["SCRAM-SHA-256".into()],
                            )))
                            .await?;
                    }
                }
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let slot = client.session_extensions().get::<Arc<AuthSlot>>();
                let state = slot.and_then(|s| s.0.lock().take());
                match state {
                    Some(AuthState::Password) => {
                        let password = msg.into_password()?.password;
                        let (verifier, read_only, known) = self.users.lookup(&user);
                        if known && verifier.check_password(&password) {
                            self.accept(client, read_only).await
                        } else {
                            Err(auth_failed(&user))
                        }
                    }
                    Some(AuthState::ScramFirst) => {
                        let first = msg.into_sasl_initial_response()?;
                        if first.auth_method != "SCRAM-SHA-256" {
                            return Err(fatal(
                                "28000",
                                format!("SASL mechanism \"{}\" is not offered", first.auth_method),
                                None,
                            ));
                        }
                        let (verifier, read_only, known) = self.users.lookup(&user);
                        let nonce = B64.encode(rand_bytes::<18>());
                        let data = first.data.unwrap_or_default();
                        let server = ScramServer::start(&data, verifier, &nonce)
                            .map_err(|_| auth_failed(&user))?;
                        let reply = server.server_first().as_bytes().to_vec();
                        set_state(
                            client,
                            AuthState::ScramFinal(Box::new(server), read_only, known),
                        );
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(reply.into()),
                            ))
                            .await?;
                        Ok(())
                    }
                    Some(AuthState::ScramFinal(server, read_only, known)) => {
                        let response = msg.into_sasl_response()?;
                        match server.finish(&response.data) {
                            Ok(last) if known => {
                                client
                                    .feed(PgWireBackendMessage::Authentication(
                                        Authentication::SASLFinal(last.into_bytes().into()),
                                    ))
                                    .await?;
                                self.accept(client, read_only).await
                            }
                            _ => Err(auth_failed(&user)),
                        }
                    }
                    None => Err(fatal("08P01", "unexpected password message".into(), None)),
                }
            }
            _ => Ok(()),
        }
    }
}

fn set_state<C: ClientInfo + ?Sized>(client: &C, state: AuthState) {
    let slot = client
        .session_extensions()
        .get_or_insert_with(|| Arc::new(AuthSlot::default()));
    *slot.0.lock() = Some(state);
}

impl Startup {
    /// Authentication succeeded: register for cancel requests, send the parameters.
    async fn accept<C>(&self, client: &mut C, read_only: bool) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if read_only {
            client
                .metadata_mut()
                .insert(METADATA_READ_ONLY.into(), "on".into());
        }
        let name = client
            .metadata()
            .get(pgwire::api::METADATA_DATABASE)
            .cloned();
        let engine = self
            .databases
            .engine(name.as_deref())
            .await
            .map_err(|e| fatal(e.sqlstate(), e.to_string(), None))?;
        let own = !Arc::ptr_eq(&engine, self.databases.default_engine());
        client.session_extensions().insert(Database {
            engine,
            name: name.filter(|_| own),
        });
        let (pid, key) = client.pid_and_secret_key();
        let (handle, guard) = self.connections.register(pid, key);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &self.parameters).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_get_a_stable_made_up_salt() {
        let users = Users::new(&[]);
        let (a, _, known) = users.lookup("mallory");
        let (b, _, _) = users.lookup("mallory");
        let (c, _, _) = users.lookup("eve");
        assert!(!known);
        assert_eq!(a.salt, b.salt);
        assert_ne!(a.salt, c.salt);
    }
}
