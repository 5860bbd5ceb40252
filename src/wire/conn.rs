//! One client connection: TLS negotiation, then messages until the client leaves, the
//! session has been idle too long, a message is too large, or the server shuts down.
//! pgwire decodes and dispatches each message; this loop decides when to stop reading.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{MaybeTls, negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, FramedParts};

use super::Handlers;

/// How long a client may take to start up and authenticate (Postgres:
/// authentication_timeout).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub idle_session_timeout: Option<Duration>,
    pub max_message_size: usize,
}

/// What the framing check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    /// A message declared more bytes than the limit.
    TooLarge(u64),
    /// A length field smaller than itself.
    BadLength(u64),
    /// A Query whose text is not NUL-terminated.
    Unterminated,
}

impl Violation {
    fn message(self, limit: usize) -> String {
        match self {
            Violation::TooLarge(n) => {
                format!("message of {n} bytes is larger than the limit of {limit} bytes")
            }
            Violation::BadLength(n) => format!("invalid message length {n}"),
            Violation::Unterminated => "invalid string in message".into(),
        }
    }
}

/// Follows message boundaries in the bytes a client sends and stops the read at a
/// length header over the limit, before the body is buffered.
#[derive(Debug)]
struct Framing {
    /// The next message has no type byte (the startup packet).
    untyped: bool,
    header: [u8; 5],
    have: usize,
    body_left: u64,
    limit: u64,
    /// Type byte and last body byte of the message being read.
    tag: u8,
    last: u8,
}

impl Framing {
    fn new(limit: u64) -> Framing {
        Framing {
            untyped: true,
            header: [0; 5],
            have: 0,
            body_left: 0,
            limit,
            tag: 0,
            last: 0,
        }
    }

    /// Feed the bytes the client sent next.
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(bytes.len());
                self.body_left -= n as u64;
                self.last = bytes[n - 1];
                bytes = &bytes[n..];
                if self.body_left == 0 && self.tag == b'Q' && self.last != 0 {
                    return Err(Violation::Unterminated);
                }
                continue;
            }
            let need = if self.untyped { 4 } else { 5 };
            let n = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == need {
                let at = need - 4;
                let len = u32::from_be_bytes([
                    self.header[at],
                    self.header[at + 1],
                    self.header[at + 2],
                    self.header[at + 3],
                ]) as u64;
                if len > self.limit {
                    return Err(Violation::TooLarge(len));
                }
                if len < 4 {
                    return Err(Violation::BadLength(len));
                }
                self.tag = if self.untyped { 0 } else { self.header[0] };
                if self.tag == b'Q' && len == 4 {
                    return Err(Violation::Unterminated);
                }
                self.body_left = len - 4;
                self.have = 0;
                self.untyped = false;
            }
        }
        Ok(())
    }
}

/// The client's stream with [`Framing`] applied to what it reads, and replies held
/// back while a request is under way ([`Guarded::hold`]).
pub struct Guarded {
    inner: MaybeTls,
    framing: Framing,
    refused: Arc<parking_lot::Mutex<Option<Violation>>>,
    /// Whether replies are held: set while the extended protocol's messages before a
    /// Sync or Flush are handled. Postgres sends nothing of them until then, so a
    /// statement's replies (BindComplete, rows, CommandComplete, ReadyForQuery) leave
    /// in one write instead of one per message, and the client wakes once.
    hold: bool,
    /// Replies written but not yet sent, and how many of their bytes have been.
    held: Vec<u8>,
    sent: usize,
}

/// How many bytes of held replies are sent anyway (a large result's rows).
const HOLD_AT_MOST: usize = 64 * 1024;

impl Guarded {
    /// Hold replies (`true`) until Sync or Flush, or send them as they come.
    fn hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Send the held replies.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(v) = this.framing.observe(&buf.filled()[before..]) {
                    *this.refused.lock() = Some(v);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "message too large",
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.hold && this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        // Held, or the last reply of a held request (its ReadyForQuery): joined to the
        // others, sent by the flush that follows.
        if this.held.len() >= HOLD_AT_MOST {
            std::task::ready!(this.poll_send_held(cx))?;
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold && this.held.len() < HOLD_AT_MOST {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(
        ErrorInfo::new("FATAL".into(), code.into(), message.into()).into(),
    )
}

/// Does the connection start with direct TLS or a startup packet of a sane length?
async fn plausible_first_packet(tcp: &TcpStream) -> io::Result<bool> {
    let mut head = [0u8; 4];
    // A peek cannot tell a slow client from one that sent a few bytes and left: after a
    // short while, leave short beginnings to pgwire's reader (which sees the EOF).
    for _ in 0..20 {
        let n = tcp.peek(&mut head).await?;
        if n == 0 {
            return Ok(false);
        }
        if head[0] == 0x16 {
            return Ok(true);
        }
        if n == 4 {
            let len = u32::from_be_bytes(head);
            return Ok((8..=10_000).contains(&len));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(true)
}

/// Serve one client until it leaves or `shutdown` turns true while it is idle.
pub async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    let first = tokio::select! {
        _ = &mut startup => return Ok(()),
        ok = plausible_first_packet(&tcp) => ok?,
    };
    if !first {
        // As Postgres: an invalid startup packet length closes the connection.
        return Ok(());
    }
    let negotiated = tokio::select! {
        _ = &mut startup => return Ok(()),
        s = negotiate_tls::<super::Prepared>(tcp, tls) => s?,
    };
    // A client that asked for direct TLS while none is configured.
    let Some(framed) = negotiated else {
        return Ok(());
    };
    let old = framed.into_parts();
    let refused = Arc::new(parking_lot::Mutex::new(None));
    let mut framing = Framing::new(limits.max_message_size as u64);
    if let Err(v) = framing.observe(&old.read_buf) {
        *refused.lock() = Some(v);
    }
    let io = Guarded {
        inner: old.io,
        framing,
        refused: refused.clone(),
        hold: false,
        held: Vec::new(),
        sent: 0,
    };
    let mut parts = FramedParts::new(io, old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup_handler = handlers.startup.clone();
    let query = handlers.query.clone();
    let cancel = handlers.cancel.clone();
    let errors = handlers.error_handler();

    // Between requests: the last message was answered with ReadyForQuery (a simple
    // query, a Sync, the end of startup). Only then may the session be closed for being
    // idle or for shutdown: a client between Parse and Sync is mid-request.
    let mut between_requests = true;
    loop {
        let state = socket.state();
        let starting = matches!(
            state,
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let at_rest =
            starting || (between_requests && matches!(state, PgWireConnectionState::ReadyForQuery));
        let idle_limit = match state {
            PgWireConnectionState::ReadyForQuery if at_rest => limits.idle_session_timeout,
            _ => None,
        };
        let idle = async {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let stop = async {
            if at_rest {
                let _ = shutdown.wait_for(|&s| s).await;
            } else {
                std::future::pending::<()>().await
            }
        };
        let next = tokio::select! {
            biased;
            _ = stop => {
                let _ = socket
                    .send(fatal("57P01", "terminating connection due to administrator command"))
                    .await;
                break;
            }
            _ = &mut startup, if starting => break,
            _ = idle => {
                let _ = socket
                    .send(fatal("57P05", "terminating connection due to idle-session timeout"))
                    .await;
                break;
            }
            m = socket.next() => m,
        };
        match next {
            Some(Ok(PgWireFrontendMessage::Terminate(_))) | None => break,
            Some(Ok(msg)) => {
                between_requests = matches!(
                    msg,
                    PgWireFrontendMessage::Query(_)
                        | PgWireFrontendMessage::Sync(_)
                        | PgWireFrontendMessage::Startup(_)
                        | PgWireFrontendMessage::PasswordMessageFamily(_)
                        | PgWireFrontendMessage::CopyDone(_)
                        | PgWireFrontendMessage::CopyFail(_)
                );
                let extended_query = match socket.state() {
                    PgWireConnectionState::CopyInProgress(e) => e,
                    _ => msg.is_extended_query(),
                };
                // Replies wait for the Sync or Flush that ends the request, as
                // Postgres' do.
                socket.get_mut().hold(matches!(
                    msg,
                    PgWireFrontendMessage::Parse(_)
                        | PgWireFrontendMessage::Bind(_)
                        | PgWireFrontendMessage::Describe(_)
                        | PgWireFrontendMessage::Execute(_)
                        | PgWireFrontendMessage::Close(_)
                ));
                let handled = std::panic::AssertUnwindSafe(process_message(
                    msg,
                    &mut socket,
                    startup_handler.clone(),
                    query.clone(),
                    query.clone(),
                    query.clone(),
                    cancel.clone(),
                ))
                .catch_unwind()
                .await
                .unwrap_or_else(|p| Err(query.panicked(&mut socket, &panic_message(p.as_ref()))));
                if let Err(mut e) = handled {
                    use pgwire::api::ErrorHandler;
                    errors.on_error(&socket, &mut e);
                    // An error leaves at once, as Postgres flushes it: a client that
                    // sent Flush (a pipeline) waits for it, and the Flush it sends
                    // after the error is skipped with everything else until Sync.
                    socket.get_mut().hold(false);
                    process_error(&mut socket, e, extended_query).await?;
                    socket.flush().await?;
                }
                // A COPY FROM STDIN started by Execute: the client waits for its
                // CopyInResponse before it sends the data (and no Sync comes first).
                if matches!(socket.state(), PgWireConnectionState::CopyInProgress(_)) {
                    socket.get_mut().hold(false);
                    socket.flush().await?;
                }
            }
            Some(Err(e)) => {
                socket.get_mut().hold(false);
                let violation = *refused.lock();
                let reply = match (violation, e) {
                    (Some(v), _) => fatal("08P01", v.message(limits.max_message_size)),
                    (None, PgWireError::IoError(_)) => break,
                    (None, other) => fatal("08P01", format!("invalid frontend message: {other}")),
                };
                let _ = socket.send(reply).await;
                break;
            }
        }
    }
    let _ = socket.close().await;
    Ok(())
}

/// The message a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a statement panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(limit: u64) -> Framing {
        Framing::new(limit)
    }

    #[test]
    fn framing_follows_messages_split_anywhere() {
        // startup (untyped, 8 bytes), then Q with a 5-byte body, then Q declaring 1 MB.
        let mut bytes = vec![0, 0, 0, 8, 0, 3, 0, 0];
        bytes.extend_from_slice(&[b'Q', 0, 0, 0, 9, b'a', b'b', b'c', b'd', 0]);
        let big = [b'Q', 0, 0x10, 0, 0];
        for split in 0..bytes.len() {
            let mut f = framing(1000);
            assert_eq!(f.observe(&bytes[..split]), Ok(()));
            assert_eq!(f.observe(&bytes[split..]), Ok(()));
            assert_eq!(f.observe(&big[..3]), Ok(()));
            assert_eq!(f.observe(&big[3..]), Err(Violation::TooLarge(0x100000)));
        }
        let mut f = framing(1000);
        assert_eq!(
            f.observe(&[0, 0x10, 0, 0]),
            Err(Violation::TooLarge(0x100000))
        );
        let mut f = framing(1000);
        assert_eq!(
            f.observe(&[0, 0, 0, 8, 0, 3, 0, 0, b'Q', 0, 0, 0, 2]),
            Err(Violation::BadLength(2))
        );
        let mut f = framing(1000);
        let unterminated = [0, 0, 0, 8, 0, 3, 0, 0, b'Q', 0, 0, 0, 6, b'a', b'b'];
        assert_eq!(f.observe(&unterminated), Err(Violation::Unterminated));
    }
}
