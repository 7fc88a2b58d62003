//! Signing-key material: generation (by the RustCrypto crates), the public JWK, and
//! encryption of the private half at rest with AES-256-GCM under the configured key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::{Value, json};

use crate::config::SigningAlg;

/// A freshly generated key pair.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// PKCS#8 DER (EdDSA, ES256) or PKCS#1 DER (RS256), as jsonwebtoken reads them.
    pub private_der: Vec<u8>,
    pub public_jwk: Value,
}

pub fn generate(alg: SigningAlg) -> anyhow::Result<GeneratedKey> {
    let (private_der, mut jwk) = match alg {
        SigningAlg::EdDSA => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let der = key.to_pkcs8_der()?.as_bytes().to_vec();
            let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
            (der, json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
        }
        SigningAlg::ES256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            use p256::pkcs8::EncodePrivateKey;
            let key = p256::SecretKey::random(&mut OsRng);
            let der = key.to_pkcs8_der()?.as_bytes().to_vec();
            let point = key.public_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                anyhow::bail!("P-256 public key without coordinates");
            };
            (
                der,
                json!({"kty": "EC", "crv": "P-256",
                       "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
            )
        }
        SigningAlg::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048)?;
            let der = key.to_pkcs1_der()?.as_bytes().to_vec();
            (
                der,
                json!({"kty": "RSA",
                       "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                       "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())}),
            )
        }
    };
    // The kid is the RFC 7638 thumbprint: stable, and derived from the key itself.
    let parsed: Jwk = serde_json::from_value(jwk.clone())?;
    let kid = parsed.thumbprint(ThumbprintHash::SHA256)?;
    jwk["kid"] = Value::String(kid.clone());
    jwk["alg"] = Value::String(alg.as_str().into());
    jwk["use"] = Value::String("sig".into());
    Ok(GeneratedKey {
        kid,
        alg,
        private_der,
        public_jwk: jwk,
    })
}

pub fn encoding_key(alg: SigningAlg, der: &[u8]) -> EncodingKey {
    match alg {
        SigningAlg::EdDSA => EncodingKey::from_ed_der(der),
        SigningAlg::ES256 => EncodingKey::from_ec_der(der),
        SigningAlg::RS256 => EncodingKey::from_rsa_der(der),
    }
}

pub fn decoding_key(jwk: &Value) -> anyhow::Result<DecodingKey> {
    let jwk: Jwk = serde_json::from_value(jwk.clone())?;
    Ok(DecodingKey::from_jwk(&jwk)?)
}

/// Encrypts and decrypts private keys at rest. The kid is bound in as associated data, so a
/// ciphertext moved to another row does not decrypt.
pub struct KeyCipher(Aes256Gcm);

impl KeyCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting a signing key"))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(sealed.len() > 12, "sealed key too short");
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into()?;
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: kid.as_bytes() })
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot decrypt signing key {kid}: AUTH_KEY_ENCRYPTION_KEY is not the key it was stored with"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_jwk() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let key = generate(alg).unwrap();
            let mut header = Header::new(alg.jwt());
            header.kid = Some(key.kid.clone());
            let token = jsonwebtoken::encode(
                &header,
                &json!({"sub": "x"}),
                &encoding_key(alg, &key.private_der),
            )
            .unwrap();
            let mut v = Validation::new(alg.jwt());
            v.required_spec_claims.clear();
            v.validate_exp = false;
            let dk = decoding_key(&key.public_jwk).unwrap();
            jsonwebtoken::decode::<Value>(&token, &dk, &v).unwrap();
            assert_eq!(key.public_jwk["kid"], key.kid.as_str());
            assert!(
                key.public_jwk.get("d").is_none(),
                "no private part in the JWK"
            );
        }
    }

    #[test]
    fn sealed_keys_open_only_with_the_same_key_and_kid() {
        let cipher = KeyCipher::new(&[7u8; 32]);
        let sealed = cipher.seal("kid-1", b"secret der").unwrap();
        assert_eq!(cipher.open("kid-1", &sealed).unwrap(), b"secret der");
        assert!(cipher.open("kid-2", &sealed).is_err());
        assert!(KeyCipher::new(&[8u8; 32]).open("kid-1", &sealed).is_err());
    }
}
