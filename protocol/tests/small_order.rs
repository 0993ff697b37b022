//! Small-order keys (protocol.md sections 2.1 and 5.2, open question 16):
//! a public identity whose Ed25519 or X25519 key has small order does not
//! decode, even with a self-signature that the cofactorless rules accept.

use caucus_protocol::codec::Canonical;
use caucus_protocol::crypto::label;
use caucus_protocol::identity::{DeviceKeys, PublicIdentity};

fn identity_bytes(signing_key: &[u8; 32], dh_key: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
    [&signing_key[..], dh_key, signature].concat()
}

/// The identity point as a signing key "signs" every message with
/// `(R = A, S = 0)`: anyone could make such an identity, and every
/// signature it shows would verify under RFC 8032's cofactorless check.
#[test]
fn an_identity_whose_signing_key_is_the_identity_point_does_not_decode() {
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    let dh = *DeviceKeys::generate().unwrap().public().dh_key().as_bytes();
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity_point);
    let err = PublicIdentity::from_bytes(&identity_bytes(&identity_point, &dh, &forged))
        .unwrap_err()
        .to_string();
    assert!(err.contains("signing key is of small order"), "{err}");
}

/// Every X25519 public key that Wycheproof flags `LowOrderPublic`
/// (tests/vectors/x25519_test.json), put in an identity properly
/// self-signed by a real device key, makes it fail to decode; the
/// vectors' other public keys decode.
#[test]
fn an_identity_with_a_small_order_dh_key_does_not_decode() {
    let keys = DeviceKeys::generate().unwrap();
    let signing_key = *keys.public().signing_key();
    let path = format!(
        "{}/tests/vectors/x25519_test.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut refused, mut accepted) = (0, 0);
    for group in all["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            let dh: [u8; 32] = hex::decode(test["public"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let low = test["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "LowOrderPublic");
            let body = [&signing_key[..], &dh].concat();
            let signature = keys.sign(label::IDENTITY, &body);
            let decoded =
                PublicIdentity::from_bytes(&identity_bytes(&signing_key, &dh, &signature.0));
            if low {
                let err = decoded.unwrap_err().to_string();
                assert!(err.contains("DH key is of small order"), "{err}");
                refused += 1;
            } else {
                assert!(decoded.is_ok(), "tcId {}", test["tcId"]);
                accepted += 1;
            }
        }
    }
    assert!(refused > 0 && accepted > 0);
}
