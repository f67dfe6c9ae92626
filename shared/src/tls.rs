//! TLS for the outgoing HTTP client (model providers, MCP servers, the JWKS fetch).
//!
//! Certificates are checked against the platform's roots, as reqwest does by default, but the
//! roots are loaded on the first TLS handshake instead of when the client is built: reading and
//! parsing them costs milliseconds of cold start, which a function that never calls out over
//! TLS (or calls plain-HTTP servers only, like the local run) should not pay.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The configuration reqwest is given in place of its own: ring, the default protocol versions,
/// HTTP/1.1 (the only protocol the client speaks), and the platform's roots, loaded lazily.
pub fn client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // `dangerous` is rustls' door to a custom verifier; this one verifies exactly as the
    // platform verifier reqwest would have built.
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LazyPlatformVerifier::new(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[derive(Debug)]
struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    platform: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyPlatformVerifier {
    fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            platform: OnceLock::new(),
        }
    }

    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // Handshake signatures need the algorithms only, not the roots.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::CertificateError;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    /// A server certificate for chat.example, self-signed: no platform's root vouches for it.
    const SELF_SIGNED: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBwjCCAWigAwIBAgIUKO1DBQecSlIIv7UlY+G9pxsIv3gwCgYIKoZIzj0EAwIw\n\
FzEVMBMGA1UEAwwMY2hhdC5leGFtcGxlMCAXDTI2MTIwMzA2MDg0OVoYDzIxMjYx\n\
MTA5MDYwODQ5WjAXMRUwEwYDVQQDDAxjaGF0LmV4YW1wbGUwWTATBgcqhkjOPQIB\n\
BggqhkjOPQMBBwNCAAQoEGRq21kkSdxEjNi2gV+r0LmhXANsJHo5u2+H/BB+VaEL\n\
pbNd1kYtXRTkf2EYPNS1PrAKn7Tq0zgAKuJCnhomo4GPMIGMMB0GA1UdDgQWBBRb\n\
MslN9JzIKzOtELVUxxaa5az5+zAfBgNVHSMEGDAWgBRbMslN9JzIKzOtELVUxxaa\n\
5az5+zAXBgNVHREEEDAOggxjaGF0LmV4YW1wbGUwDAYDVR0TAQH/BAIwADATBgNV\n\
HSUEDDAKBggrBgEFBQcDATAOBgNVHQ8BAf8EBAMCB4AwCgYIKoZIzj0EAwIDSAAw\n\
RQIhAN0E+k4O6LSujQa2G+ih+BQeXkzz1+R1yynTG+z70PxDAiBLh7j7JXSoniHR\n\
j9ODUOgsAjVOtTDhPH3d5JrwOyWegA==\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn the_roots_are_loaded_on_the_first_handshake_and_an_unknown_issuer_is_refused() {
        let verifier =
            LazyPlatformVerifier::new(Arc::new(rustls::crypto::ring::default_provider()));
        assert!(verifier.platform.get().is_none());

        let certificate = CertificateDer::from_pem_slice(SELF_SIGNED.as_bytes()).unwrap();
        let server = ServerName::try_from("chat.example").unwrap();
        let refused = verifier
            .verify_server_cert(&certificate, &[], &server, &[], UnixTime::now())
            .unwrap_err();

        assert_eq!(
            refused,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert!(verifier.platform.get().is_some_and(Result::is_ok));
    }
}
