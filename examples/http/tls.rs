//! `--tls`: the rustls acceptor `http` wraps each connection in, with ALPN offering h2 and
//! http/1.1, and its certificate: PEM files, or a self-signed one made at start.
//!
//! rustls runs over coreio's `tokio::io` impls of `TcpStream` (feature `tokio`) through
//! tokio-rustls; hyper then sees the TLS stream through hyper-util's `TokioIo`.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::options::Certificate;

/// The names the self-signed certificate is for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// An acceptor for `certificate`, or why there is none.
pub fn acceptor(certificate: &Certificate) -> Result<TlsAcceptor, String> {
    let (chain, key) = match certificate {
        Certificate::SelfSigned => self_signed()?,
        Certificate::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot configure TLS: {err}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| format!("the TLS certificate or key is unusable: {err}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

type Chain = Vec<CertificateDer<'static>>;

fn self_signed() -> Result<(Chain, PrivateKeyDer<'static>), String> {
    let names: Vec<String> = SELF_SIGNED_NAMES
        .iter()
        .map(|name| name.to_string())
        .collect();
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|err| format!("cannot make a self-signed certificate: {err}"))?;
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((vec![certified.cert.der().clone()], key.into()))
}

fn read_chain(path: &Path) -> Result<Chain, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Chain, _>>())
        .map_err(|err| format!("cannot read certificates from {}: {err}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| format!("cannot read a private key from {}: {err}", path.display()))
}
