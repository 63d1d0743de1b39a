//! The authenticated handshake that opens every internode connection.
//!
//! Nodes of one cluster share a secret. Each side proves it knows the secret without sending it:
//! both send a fresh random nonce, and each answers with an HMAC-SHA256 over both nonces and
//! both names, under a label saying which side it is (so one side's proof can never be replayed
//! as the other's). The listening side proves itself first; the connecting side checks that
//! proof before it sends its own, so a client never talks to an impostor, and the listener
//! accepts nothing before the client's proof checks. A node without a secret uses the empty key:
//! that authenticates nothing, which is why a node refuses to listen on a non-loopback address
//! without one (see the node's configuration).
//!
//! ```text
//! client                                   server
//!   Hello{version, purpose, name, nonce_c}  ->
//!                                          <-  Welcome{version, name, nonce_s, proof_s}
//!   (checks proof_s)
//!   Proof{proof_c}                          ->
//!                                          <-  Ready | Refused{reason}
//! ```
//!
//! Every step has a small frame limit and the whole exchange a timeout, so an unauthenticated
//! peer can hold a connection only briefly and with almost no memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::codec::{Framed, FramedParts};

use crate::PeerName;
use crate::frame::FrameCodec;
use crate::net::{Conn, Net};

/// The internode protocol version; peers must speak the same one.
pub const PROTOCOL_VERSION: u16 = 1;
/// "RILL" in ASCII: what an internode connection starts with.
const MAGIC: u32 = 0x5249_4C4C;
/// Largest handshake frame.
const HANDSHAKE_FRAME: usize = 4096;
/// How long either side waits for the whole exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection will carry after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Multiplexed requests and replies (the one connection per peer).
    Mux,
    /// One bulk stream (a handoff, a key listing), on a connection of its own.
    Stream,
}

/// The shared cluster secret (empty when none is configured).
#[derive(Clone)]
pub struct Auth {
    secret: Arc<[u8]>,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Auth {
        Auth {
            secret: Arc::from(secret),
        }
    }

    /// No secret: the empty key, for loopback-only nodes.
    pub fn none() -> Auth {
        Auth::new(b"")
    }

    pub fn has_secret(&self) -> bool {
        !self.secret.is_empty()
    }

    fn proof(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32], names: [&str; 2]) -> Mac32 {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        for name in names {
            mac.update(&(name.len() as u32).to_be_bytes());
            mac.update(name.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn verify(
        &self,
        label: &[u8],
        first: &[u8; 32],
        second: &[u8; 32],
        names: [&str; 2],
        proof: &Mac32,
    ) -> bool {
        let expected = self.proof(label, first, second, names);
        // Constant-time comparison: the time taken must not reveal how many bytes matched.
        expected
            .iter()
            .zip(proof.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

type Mac32 = [u8; 32];

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    Hello {
        magic: u32,
        version: u16,
        purpose: Purpose,
        name: String,
        nonce: [u8; 32],
    },
    Welcome {
        version: u16,
        name: String,
        nonce: [u8; 32],
        proof: Mac32,
    },
    Proof {
        proof: Mac32,
    },
    Ready,
    Refused {
        reason: String,
    },
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("authentication failed: the peer's proof does not match this node's cluster secret")]
    BadProof,
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    #[error("the peer speaks internode protocol {theirs}, this node {PROTOCOL_VERSION}")]
    Version { theirs: u16 },
    #[error("not a Rill internode peer (unexpected handshake message)")]
    Protocol,
    #[error("handshake timed out")]
    Timeout,
    #[error("connection failed during the handshake: {0}")]
    Io(String),
}

/// An authenticated connection, ready for its purpose.
pub struct Handshaken {
    pub conn: Box<dyn Conn>,
    /// Bytes already read past the handshake (normally none).
    pub read_buf: BytesMut,
    /// The authenticated name of the peer.
    pub peer: PeerName,
    pub purpose: Purpose,
}

type HsFramed = Framed<Box<dyn Conn>, FrameCodec>;

async fn send(f: &mut HsFramed, msg: &Message) -> Result<(), HandshakeError> {
    let raw = postcard::to_allocvec(msg).expect("handshake messages serialize");
    f.send(Bytes::from(raw))
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

async fn recv(f: &mut HsFramed) -> Result<Message, HandshakeError> {
    match f.next().await {
        Some(Ok(raw)) => postcard::from_bytes(&raw).map_err(|_| HandshakeError::Protocol),
        Some(Err(e)) => Err(HandshakeError::Io(e.to_string())),
        None => Err(HandshakeError::Io("connection closed".into())),
    }
}

fn finish(f: HsFramed, peer: String, purpose: Purpose) -> Handshaken {
    let parts = f.into_parts();
    Handshaken {
        conn: parts.io,
        read_buf: parts.read_buf,
        peer: PeerName::from(peer),
        purpose,
    }
}

/// The connecting side: opens the exchange as `me` and returns the authenticated peer.
pub async fn connect(
    conn: Box<dyn Conn>,
    net: &dyn Net,
    auth: &Auth,
    me: &str,
    purpose: Purpose,
) -> Result<Handshaken, HandshakeError> {
    let mut nonce = [0u8; 32];
    net.fill_random(&mut nonce);
    let exchange = async {
        let mut f = Framed::new(conn, FrameCodec::new(HANDSHAKE_FRAME));
        let hello = Message::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            purpose,
            name: me.to_string(),
            nonce,
        };
        send(&mut f, &hello).await?;
        let (server, server_nonce) = match recv(&mut f).await? {
            Message::Welcome {
                version,
                name,
                nonce: server_nonce,
                proof,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(HandshakeError::Version { theirs: version });
                }
                if !auth.verify(b"rill/server", &nonce, &server_nonce, [me, &name], &proof) {
                    return Err(HandshakeError::BadProof);
                }
                (name, server_nonce)
            }
            Message::Refused { reason } => return Err(HandshakeError::Refused(reason)),
            _ => return Err(HandshakeError::Protocol),
        };
        let proof = auth.proof(b"rill/client", &server_nonce, &nonce, [me, &server]);
        send(&mut f, &Message::Proof { proof }).await?;
        match recv(&mut f).await? {
            Message::Ready => Ok(finish(f, server, purpose)),
            Message::Refused { reason } => Err(HandshakeError::Refused(reason)),
            _ => Err(HandshakeError::Protocol),
        }
    };
    crate::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// The listening side: answers a connecting peer as `me`.
pub async fn accept(
    conn: Box<dyn Conn>,
    net: &dyn Net,
    auth: &Auth,
    me: &str,
) -> Result<Handshaken, HandshakeError> {
    let mut nonce = [0u8; 32];
    net.fill_random(&mut nonce);
    let exchange = async {
        let mut f = Framed::new(conn, FrameCodec::new(HANDSHAKE_FRAME));
        let (client, client_nonce, purpose) = match recv(&mut f).await? {
            Message::Hello {
                magic: MAGIC,
                version,
                purpose,
                name,
                nonce: client_nonce,
            } => {
                if version != PROTOCOL_VERSION {
                    let reason = format!(
                        "this node speaks internode protocol {PROTOCOL_VERSION}, not {version}"
                    );
                    let _ = send(&mut f, &Message::Refused { reason }).await;
                    return Err(HandshakeError::Version { theirs: version });
                }
                (name, client_nonce, purpose)
            }
            _ => return Err(HandshakeError::Protocol),
        };
        let proof = auth.proof(b"rill/server", &client_nonce, &nonce, [&client, me]);
        let welcome = Message::Welcome {
            version: PROTOCOL_VERSION,
            name: me.to_string(),
            nonce,
            proof,
        };
        send(&mut f, &welcome).await?;
        match recv(&mut f).await? {
            Message::Proof { proof }
                if auth.verify(b"rill/client", &nonce, &client_nonce, [&client, me], &proof) =>
            {
                send(&mut f, &Message::Ready).await?;
                Ok(finish(f, client, purpose))
            }
            Message::Proof { .. } => {
                let reason = "authentication failed: wrong or missing cluster secret".to_string();
                let _ = send(&mut f, &Message::Refused { reason }).await;
                Err(HandshakeError::BadProof)
            }
            _ => Err(HandshakeError::Protocol),
        }
    };
    crate::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// Rebuilds a framed connection from a handshake's output with the transport's codec.
pub fn reframe(hs: Handshaken, codec: FrameCodec) -> Framed<Box<dyn Conn>, FrameCodec> {
    let mut parts = FramedParts::new::<Bytes>(hs.conn, codec);
    parts.read_buf = hs.read_buf;
    Framed::from_parts(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemNet;
    use std::net::{IpAddr, SocketAddr};
    use tokio::io::AsyncWriteExt;

    async fn pair(net: &MemNet) -> (Box<dyn Conn>, Box<dyn Conn>) {
        let a = net.host(IpAddr::from([10, 0, 0, 1]));
        let b = net.host(IpAddr::from([10, 0, 0, 2]));
        let addr = SocketAddr::from(([10, 0, 0, 2], 7));
        let mut l = b.bind(addr).await.unwrap();
        let c = a.connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    async fn run(
        client_auth: Auth,
        server_auth: Auth,
    ) -> (
        Result<Handshaken, HandshakeError>,
        Result<Handshaken, HandshakeError>,
    ) {
        let net = MemNet::new(5);
        let (c, s) = pair(&net).await;
        let host = net.host(IpAddr::from([10, 0, 0, 9]));
        let host2 = net.host(IpAddr::from([10, 0, 0, 9]));
        let server = tokio::spawn(async move { accept(s, &*host2, &server_auth, "b@h").await });
        let client = connect(c, &*host, &client_auth, "a@h", Purpose::Mux).await;
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn matching_secrets_authenticate_both_names() {
        let (c, s) = run(Auth::new(b"s3cret"), Auth::new(b"s3cret")).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(&*c.peer, "b@h");
        assert_eq!(&*s.peer, "a@h");
        assert_eq!(s.purpose, Purpose::Mux);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (c, s) = run(Auth::new(b"one"), Auth::new(b"two")).await;
        // The client sees the server's proof fail first and never sends its own.
        assert_eq!(c.err().unwrap(), HandshakeError::BadProof);
        assert!(s.is_err());
    }

    #[tokio::test]
    async fn a_missing_secret_is_refused() {
        let (c, s) = run(Auth::none(), Auth::new(b"two")).await;
        assert!(c.is_err());
        assert!(s.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_and_silence_end_the_handshake_without_panicking() {
        let net = MemNet::new(5);
        let (mut c, s) = pair(&net).await;
        c.write_all(&[0, 0, 0, 3, 0xFF, 0xFE, 0xFD]).await.unwrap();
        let host = net.host(IpAddr::from([10, 0, 0, 9]));
        let r = accept(s, &*host, &Auth::none(), "b@h").await;
        assert_eq!(r.err().unwrap(), HandshakeError::Protocol);

        let (_c, s) = pair(&net).await;
        let r = accept(s, &*host, &Auth::none(), "b@h").await;
        assert_eq!(r.err().unwrap(), HandshakeError::Timeout);

        let (mut c, s) = pair(&net).await;
        c.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let r = accept(s, &*host, &Auth::none(), "b@h").await;
        assert!(matches!(r.err().unwrap(), HandshakeError::Io(_)));
    }

    #[test]
    fn proofs_bind_the_label_the_nonces_and_the_names() {
        let auth = Auth::new(b"k");
        let (n1, n2) = ([1u8; 32], [2u8; 32]);
        let p = auth.proof(b"rill/server", &n1, &n2, ["a", "b"]);
        assert!(auth.verify(b"rill/server", &n1, &n2, ["a", "b"], &p));
        assert!(!auth.verify(b"rill/client", &n1, &n2, ["a", "b"], &p));
        assert!(!auth.verify(b"rill/server", &n2, &n1, ["a", "b"], &p));
        assert!(!auth.verify(b"rill/server", &n1, &n2, ["b", "a"], &p));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            auth.proof(b"x", &n1, &n2, ["ab", "c"]),
            auth.proof(b"x", &n1, &n2, ["a", "bc"])
        );
    }
}
