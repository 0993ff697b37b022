//! Tests for the HPKE module: RFC 9180 test vectors, low-order points,
//! tampering and API edge cases.

use super::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    <[u8; 32]>::try_from(h(s).as_slice()).unwrap()
}

/// One `encryptions[]` entry, with its sequence number.
struct Encryption {
    seq: u128,
    aad: Vec<u8>,
    pt: Vec<u8>,
    nonce: Vec<u8>,
    ct: Vec<u8>,
}

/// One `exports[]` entry.
struct Export {
    context: Vec<u8>,
    len: usize,
    value: Vec<u8>,
}

/// One RFC 9180 test vector for this suite.
struct Vector {
    mode: u8,
    info: Vec<u8>,
    ikm_e: Vec<u8>,
    ikm_r: Vec<u8>,
    ikm_s: Option<Vec<u8>>,
    sk_em: [u8; 32],
    sk_rm: [u8; 32],
    sk_sm: Option<[u8; 32]>,
    pk_em: [u8; 32],
    pk_rm: [u8; 32],
    pk_sm: Option<[u8; 32]>,
    enc: [u8; 32],
    psk: Option<(Vec<u8>, Vec<u8>)>,
    shared_secret: [u8; 32],
    key_schedule_context: Vec<u8>,
    secret: [u8; 32],
    key: [u8; 32],
    base_nonce: [u8; 12],
    exporter_secret: [u8; 32],
    encryptions: Vec<Encryption>,
    exports: Vec<Export>,
}

/// Runs every check of one vector: DeriveKeyPair, (Auth)Encap/(Auth)Decap,
/// key schedule, nonces, seal/open of every listed encryption and exports.
fn run_vector(v: &Vector) {
    let name = format!("mode {}", v.mode);

    // DeriveKeyPair.
    let (sk_e, pk_e) = derive_key_pair(&v.ikm_e).unwrap();
    assert_eq!(sk_e.as_bytes(), &v.sk_em, "{name}: skEm");
    assert_eq!(pk_e.as_bytes(), &v.pk_em, "{name}: pkEm");
    assert_eq!(pk_e.as_bytes(), &v.enc, "{name}: pkEm == enc");
    let (sk_r, pk_r) = derive_key_pair(&v.ikm_r).unwrap();
    assert_eq!(sk_r.as_bytes(), &v.sk_rm, "{name}: skRm");
    assert_eq!(pk_r.as_bytes(), &v.pk_rm, "{name}: pkRm");
    let sender = v.ikm_s.as_ref().map(|ikm_s| {
        let (sk_s, pk_s) = derive_key_pair(ikm_s).unwrap();
        assert_eq!(Some(sk_s.to_bytes()), v.sk_sm, "{name}: skSm");
        assert_eq!(Some(pk_s.to_bytes()), v.pk_sm, "{name}: pkSm");
        (sk_s, pk_s)
    });
    assert_eq!(sender.is_some(), v.pk_sm.is_some(), "{name}: ikmS/pkSm");
    let sk_s = sender.as_ref().map(|(sk, _)| sk);
    let pk_s = sender.as_ref().map(|(_, pk)| pk);

    // The mode implied by the inputs is the vector's mode.
    assert_eq!(
        mode(v.psk.is_some(), sender.is_some()),
        v.mode,
        "{name}: mode"
    );
    let psk = v.psk.as_ref().map(|(key, id)| Psk { key, id });
    let (psk_key, psk_id) = psk_inputs(psk).unwrap();

    // KEM.
    let (shared_secret, enc) = encap(&pk_r, &sk_e, sk_s).unwrap();
    assert_eq!(enc, v.enc, "{name}: enc");
    assert_eq!(
        *shared_secret, v.shared_secret,
        "{name}: shared_secret (encap)"
    );
    let shared_secret_r = decap(&v.enc, &sk_r, pk_s).unwrap();
    assert_eq!(
        *shared_secret_r, v.shared_secret,
        "{name}: shared_secret (decap)"
    );

    // Key schedule intermediates.
    assert_eq!(
        key_schedule_context(v.mode, &v.info, psk_id).as_slice(),
        v.key_schedule_context.as_slice(),
        "{name}: key_schedule_context"
    );
    assert_eq!(
        *key_schedule_secret(&shared_secret, psk_key),
        v.secret,
        "{name}: secret"
    );

    // Full setup, both sides.
    let (enc, mut sender_ctx) =
        setup_sender_with_ephemeral(&pk_r, &v.info, psk, sk_s, &sk_e).unwrap();
    assert_eq!(enc, v.enc, "{name}: setup enc");
    let mut receiver_ctx = setup_receiver(&enc, &sk_r, &v.info, psk, pk_s).unwrap();
    for (side, state) in [("sender", &sender_ctx.0), ("receiver", &receiver_ctx.0)] {
        assert_eq!(state.key, v.key, "{name}: {side} key");
        assert_eq!(state.base_nonce, v.base_nonce, "{name}: {side} base_nonce");
        assert_eq!(
            state.exporter_secret, v.exporter_secret,
            "{name}: {side} exporter_secret"
        );
        assert_eq!(state.seq, 0, "{name}: {side} seq");
    }

    // Encryptions, in sequence order. Skipped sequence numbers are consumed by
    // sealing dummy messages, which the receiver opens to stay in step.
    let mut encryptions: Vec<&Encryption> = v.encryptions.iter().collect();
    encryptions.sort_by_key(|e| e.seq);
    assert!(!encryptions.is_empty(), "{name}: no encryptions");
    for e in encryptions {
        assert!(sender_ctx.0.seq <= e.seq, "{name}: duplicate seq {}", e.seq);
        while sender_ctx.0.seq < e.seq {
            let dummy = sender_ctx.seal(b"dummy aad", b"dummy").unwrap();
            assert_eq!(receiver_ctx.open(b"dummy aad", &dummy).unwrap(), b"dummy");
        }
        assert_eq!(
            sender_ctx.0.current_nonce().unwrap().as_slice(),
            e.nonce.as_slice(),
            "{name}: nonce {}",
            e.seq
        );
        assert_eq!(
            receiver_ctx.0.current_nonce().unwrap().as_slice(),
            e.nonce.as_slice(),
            "{name}: receiver nonce {}",
            e.seq
        );
        let ct = sender_ctx.seal(&e.aad, &e.pt).unwrap();
        assert_eq!(ct, e.ct, "{name}: ct {}", e.seq);
        let pt = receiver_ctx.open(&e.aad, &e.ct).unwrap();
        assert_eq!(pt, e.pt, "{name}: pt {}", e.seq);
        assert_eq!(sender_ctx.0.seq, e.seq + 1);
        assert_eq!(receiver_ctx.0.seq, e.seq + 1);
    }

    // Exports.
    assert!(!v.exports.is_empty(), "{name}: no exports");
    for x in &v.exports {
        let s = sender_ctx.export(&x.context, x.len).unwrap();
        assert_eq!(s.as_slice(), x.value.as_slice(), "{name}: sender export");
        let r = receiver_ctx.export(&x.context, x.len).unwrap();
        assert_eq!(r.as_slice(), x.value.as_slice(), "{name}: receiver export");
    }
}

// ---------------------------------------------------------------------------
// 1. RFC 9180 Appendix A.2.1 (base mode), embedded
// ---------------------------------------------------------------------------

const A21_INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
const A21_IKM_E: &str = "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b";
const A21_IKM_R: &str = "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df";
const A21_SK_EM: &str = "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600";
const A21_PK_EM: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
const A21_SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
const A21_PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
const A21_ENC: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
const A21_SHARED_SECRET: &str = "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
const A21_KEY_SCHEDULE_CONTEXT: &str = "00431df6cd95e11ff49d7013563baf7f11588c75a6611ee2a4404a49306ae4cfc5b69c5718a60cc5876c358d3f7fc31ddb598503f67be58ea1e798c0bb19eb9796";
const A21_SECRET: &str = "5b9cd775e64b437a2335cf499361b2e0d5e444d5cb41a8a53336d8fe402282c6";
const A21_KEY: &str = "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91";
const A21_BASE_NONCE: &str = "5c4d98150661b848853b547f";
const A21_EXPORTER_SECRET: &str =
    "a3b010d4994890e2c6968a36f64470d3c824c8f5029942feb11e7a74b2921922";
/// "Beauty is truth, truth beauty"
const A21_PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
/// (sequence number, aad, nonce, ct)
const A21_ENCRYPTIONS: [(u128, &str, &str, &str); 6] = [
    (
        0,
        "436f756e742d30",
        "5c4d98150661b848853b547f",
        "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
    ),
    (
        1,
        "436f756e742d31",
        "5c4d98150661b848853b547e",
        "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c",
    ),
    (
        2,
        "436f756e742d32",
        "5c4d98150661b848853b547d",
        "71146bd6795ccc9c49ce25dda112a48f202ad220559502cef1f34271e0cb4b02b4f10ecac6f48c32f878fae86b",
    ),
    (
        4,
        "436f756e742d34",
        "5c4d98150661b848853b547b",
        "63357a2aa291f5a4e5f27db6baa2af8cf77427c7c1a909e0b37214dd47db122bb153495ff0b02e9e54a50dbe16",
    ),
    (
        255,
        "436f756e742d323535",
        "5c4d98150661b848853b5480",
        "18ab939d63ddec9f6ac2b60d61d36a7375d2070c9b683861110757062c52b8880a5f6b3936da9cd6c23ef2a95c",
    ),
    (
        256,
        "436f756e742d323536",
        "5c4d98150661b848853b557f",
        "7a4a13e9ef23978e2c520fd4d2e757514ae160cd0cd05e556ef692370ca53076214c0c40d4c728d6ed9e727a5b",
    ),
];
/// (exporter_context, L, exported_value)
const A21_EXPORTS: [(&str, usize, &str); 3] = [
    (
        "",
        32,
        "4bbd6243b8bb54cec311fac9df81841b6fd61f56538a775e7c80a9f40160606e",
    ),
    (
        "00",
        32,
        "8c1df14732580e5501b00f82b10a1647b40713191b7c1240ac80e2b68808ba69",
    ),
    (
        "54657374436f6e74657874",
        32,
        "5acb09211139c43b3090489a9da433e8a30ee7188ba8b0a9a1ccf0c229283e53",
    ),
];

fn a21_vector() -> Vector {
    Vector {
        mode: 0,
        info: h(A21_INFO),
        ikm_e: h(A21_IKM_E),
        ikm_r: h(A21_IKM_R),
        ikm_s: None,
        sk_em: h32(A21_SK_EM),
        sk_rm: h32(A21_SK_RM),
        sk_sm: None,
        pk_em: h32(A21_PK_EM),
        pk_rm: h32(A21_PK_RM),
        pk_sm: None,
        enc: h32(A21_ENC),
        psk: None,
        shared_secret: h32(A21_SHARED_SECRET),
        key_schedule_context: h(A21_KEY_SCHEDULE_CONTEXT),
        secret: h32(A21_SECRET),
        key: h32(A21_KEY),
        base_nonce: <[u8; 12]>::try_from(h(A21_BASE_NONCE).as_slice()).unwrap(),
        exporter_secret: h32(A21_EXPORTER_SECRET),
        encryptions: A21_ENCRYPTIONS
            .iter()
            .map(|&(seq, aad, nonce, ct)| Encryption {
                seq,
                aad: h(aad),
                pt: h(A21_PT),
                nonce: h(nonce),
                ct: h(ct),
            })
            .collect(),
        exports: A21_EXPORTS
            .iter()
            .map(|&(context, len, value)| Export {
                context: h(context),
                len,
                value: h(value),
            })
            .collect(),
    }
}

#[test]
fn base_mode_rfc9180_a_2_1() {
    let v = a21_vector();
    run_vector(&v);

    // The single-shot API opens the first vector ciphertext.
    let (sk_r, _) = derive_key_pair(&v.ikm_r).unwrap();
    let e = &v.encryptions[0];
    assert_eq!(open(&v.enc, &sk_r, &v.info, &e.aad, &e.ct).unwrap(), e.pt);
}

// ---------------------------------------------------------------------------
// 2. All four RFC 9180 vectors for this suite, from a JSON file
// ---------------------------------------------------------------------------

fn json_hex(entry: &serde_json::Value, field: &str) -> Vec<u8> {
    let s = entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("missing hex field {field}"));
    h(s)
}

fn json_hex32(entry: &serde_json::Value, field: &str) -> [u8; 32] {
    <[u8; 32]>::try_from(json_hex(entry, field).as_slice()).unwrap()
}

fn json_opt_hex(entry: &serde_json::Value, field: &str) -> Option<Vec<u8>> {
    entry.get(field).map(|_| json_hex(entry, field))
}

fn json_u64(entry: &serde_json::Value, field: &str) -> u64 {
    entry[field]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer field {field}"))
}

fn vector_from_json(entry: &serde_json::Value) -> Vector {
    let mode = u8::try_from(json_u64(entry, "mode")).unwrap();
    let psk = json_opt_hex(entry, "psk");
    let psk_id = json_opt_hex(entry, "psk_id");
    let psk = match (psk, psk_id) {
        (None, None) => None,
        (Some(psk), Some(psk_id)) => Some((psk, psk_id)),
        _ => panic!("vector has only one of psk / psk_id"),
    };
    let encryptions = entry["encryptions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(seq, e)| Encryption {
            seq: u128::try_from(seq).unwrap(),
            aad: json_hex(e, "aad"),
            pt: json_hex(e, "pt"),
            nonce: json_hex(e, "nonce"),
            ct: json_hex(e, "ct"),
        })
        .collect();
    let exports = entry["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| Export {
            context: json_hex(x, "exporter_context"),
            len: usize::try_from(json_u64(x, "L")).unwrap(),
            value: json_hex(x, "exported_value"),
        })
        .collect();
    Vector {
        mode,
        info: json_hex(entry, "info"),
        ikm_e: json_hex(entry, "ikmE"),
        ikm_r: json_hex(entry, "ikmR"),
        ikm_s: json_opt_hex(entry, "ikmS"),
        sk_em: json_hex32(entry, "skEm"),
        sk_rm: json_hex32(entry, "skRm"),
        sk_sm: json_opt_hex(entry, "skSm").map(|s| <[u8; 32]>::try_from(s.as_slice()).unwrap()),
        pk_em: json_hex32(entry, "pkEm"),
        pk_rm: json_hex32(entry, "pkRm"),
        pk_sm: json_opt_hex(entry, "pkSm").map(|s| <[u8; 32]>::try_from(s.as_slice()).unwrap()),
        enc: json_hex32(entry, "enc"),
        psk,
        shared_secret: json_hex32(entry, "shared_secret"),
        key_schedule_context: json_hex(entry, "key_schedule_context"),
        secret: json_hex32(entry, "secret"),
        key: json_hex32(entry, "key"),
        base_nonce: <[u8; 12]>::try_from(json_hex(entry, "base_nonce").as_slice()).unwrap(),
        exporter_secret: json_hex32(entry, "exporter_secret"),
        encryptions,
        exports,
    }
}

#[test]
fn all_modes_from_env_file() {
    let Some(given) = std::env::var_os("CAUCUS_HPKE_VECTORS") else {
        println!(
            "note: CAUCUS_HPKE_VECTORS is not set; skipping the full RFC 9180 vector run \
             (set it to the path of the RFC 9180 test-vector JSON)"
        );
        return;
    };
    // A relative path is taken from the workspace root, where the README's
    // test command runs, not from this crate's directory.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(given);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read CAUCUS_HPKE_VECTORS={path:?}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("CAUCUS_HPKE_VECTORS={path:?} is not JSON: {e}"));
    let entries = json.as_array().expect("vector file must be a JSON array");

    let mut ran = 0usize;
    let mut modes = std::collections::BTreeSet::new();
    for entry in entries {
        let suite = (
            entry["kem_id"].as_u64(),
            entry["kdf_id"].as_u64(),
            entry["aead_id"].as_u64(),
        );
        if suite
            != (
                Some(u64::from(KEM_ID)),
                Some(u64::from(KDF_ID)),
                Some(u64::from(AEAD_ID)),
            )
        {
            continue;
        }
        let v = vector_from_json(entry);
        assert_eq!(v.encryptions.len(), 257, "mode {}: encryptions", v.mode);
        run_vector(&v);
        modes.insert(v.mode);
        ran += 1;
    }
    println!("ran {ran} RFC 9180 vectors, modes {modes:?}");
    assert!(ran >= 4, "only {ran} vectors for this suite");
    assert_eq!(
        modes.into_iter().collect::<Vec<_>>(),
        [MODE_BASE, MODE_PSK, MODE_AUTH, MODE_AUTH_PSK]
    );
}

// ---------------------------------------------------------------------------
// 3. Low-order points
// ---------------------------------------------------------------------------

/// Little-endian u-coordinates whose X25519 product with any clamped scalar is
/// zero (low-order points of the curve or its twist), non-canonical encodings
/// of them (u + p) and encodings with the ignored top bit set.
const LOW_ORDER_POINTS: [&str; 9] = [
    // u = 0 — the all-zero key
    "0000000000000000000000000000000000000000000000000000000000000000",
    // u = 1
    "0100000000000000000000000000000000000000000000000000000000000000",
    // order 8
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    // order 8
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    // u = p - 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // p (non-canonical 0)
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // p + 1 (non-canonical 1)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // 0 with the top bit set
    "0000000000000000000000000000000000000000000000000000000000000080",
    // 1 with the top bit set
    "0100000000000000000000000000000000000000000000000000000000000080",
];

#[test]
fn low_order_points_are_rejected() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let sk_s = StaticSecret::random();
    let pk_s = PublicKey::from(&sk_s);
    let psk_key = [7u8; 32];
    let psk = Psk {
        key: &psk_key,
        id: b"psk id",
    };

    for hex_point in LOW_ORDER_POINTS {
        let point = h32(hex_point);
        let bad = PublicKey::from(point);

        // The DH itself.
        assert_eq!(dh(&sk_r, &bad).err(), Some(HpkeError::NonContributory));

        // Sender side: encapsulating to a low-order recipient key, in every mode.
        assert_eq!(
            seal(&bad, b"info", b"aad", b"pt").err(),
            Some(HpkeError::NonContributory),
            "seal to {hex_point}"
        );
        for (p, s) in [
            (None, None),
            (Some(psk), None),
            (None, Some(&sk_s)),
            (Some(psk), Some(&sk_s)),
        ] {
            assert_eq!(
                setup_sender(&bad, b"info", p, s).err(),
                Some(HpkeError::NonContributory),
                "setup_sender to {hex_point}"
            );
        }

        // Receiver side: a low-order enc, in every mode.
        assert_eq!(
            open(&point, &sk_r, b"info", b"aad", &[0u8; 32]).err(),
            Some(HpkeError::NonContributory),
            "open with enc {hex_point}"
        );
        for (p, s) in [
            (None, None),
            (Some(psk), None),
            (None, Some(&pk_s)),
            (Some(psk), Some(&pk_s)),
        ] {
            assert_eq!(
                setup_receiver(&point, &sk_r, b"info", p, s).err(),
                Some(HpkeError::NonContributory),
                "setup_receiver with enc {hex_point}"
            );
        }

        // Receiver side, auth modes: a valid enc but a low-order sender key.
        let (enc, _) = setup_sender(&pk_r, b"info", None, Some(&sk_s)).unwrap();
        for p in [None, Some(psk)] {
            assert_eq!(
                setup_receiver(&enc, &sk_r, b"info", p, Some(&bad)).err(),
                Some(HpkeError::NonContributory),
                "setup_receiver with pk_s {hex_point}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Tampering and misuse
// ---------------------------------------------------------------------------

fn flip_each_byte(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..data.len()).flat_map(move |i| {
        [0x01u8, 0x80].into_iter().map(move |mask| {
            let mut d = data.to_vec();
            d[i] ^= mask;
            d
        })
    })
}

#[test]
fn tampering_is_detected() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let info = b"tamper info";
    let aad = b"tamper aad";
    let pt = b"attack at dawn";
    let (enc, ct) = seal(&pk_r, info, aad, pt).unwrap();
    assert_eq!(ct.len(), pt.len() + 16);
    assert_eq!(open(&enc, &sk_r, info, aad, &ct).unwrap(), pt);

    for bad_ct in flip_each_byte(&ct) {
        assert_eq!(
            open(&enc, &sk_r, info, aad, &bad_ct),
            Err(HpkeError::OpenFailed)
        );
    }
    for len in 0..ct.len() {
        assert_eq!(
            open(&enc, &sk_r, info, aad, &ct[..len]),
            Err(HpkeError::OpenFailed),
            "truncated to {len}"
        );
    }
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(
        open(&enc, &sk_r, info, aad, &longer),
        Err(HpkeError::OpenFailed)
    );

    for bad_aad in flip_each_byte(aad) {
        assert_eq!(
            open(&enc, &sk_r, info, &bad_aad, &ct),
            Err(HpkeError::OpenFailed)
        );
    }
    assert_eq!(
        open(&enc, &sk_r, info, b"", &ct),
        Err(HpkeError::OpenFailed)
    );
    assert_eq!(
        open(&enc, &sk_r, info, &aad[..aad.len() - 1], &ct),
        Err(HpkeError::OpenFailed)
    );

    for bad_info in flip_each_byte(info) {
        assert_eq!(
            open(&enc, &sk_r, &bad_info, aad, &ct),
            Err(HpkeError::OpenFailed)
        );
    }
    assert_eq!(open(&enc, &sk_r, b"", aad, &ct), Err(HpkeError::OpenFailed));

    for bad_enc in flip_each_byte(&enc) {
        let bad_enc = <[u8; ENC_LEN]>::try_from(bad_enc.as_slice()).unwrap();
        let result = open(&bad_enc, &sk_r, info, aad, &ct);
        assert!(
            matches!(
                result,
                Err(HpkeError::OpenFailed | HpkeError::NonContributory)
            ),
            "tampered enc gave {result:?}"
        );
    }

    // Wrong recipient key.
    let other_sk = StaticSecret::random();
    assert_eq!(
        open(&enc, &other_sk, info, aad, &ct),
        Err(HpkeError::OpenFailed)
    );
}

#[test]
fn psk_inputs_are_checked() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let sk_s = StaticSecret::random();
    let pk_s = PublicKey::from(&sk_s);
    let key = [0x42u8; 32];
    let (enc, _) = seal(&pk_r, b"", b"", b"").unwrap();

    let inconsistent = [
        Psk { key: &key, id: b"" },
        Psk {
            key: b"",
            id: b"id",
        },
        Psk { key: b"", id: b"" },
    ];
    for psk in inconsistent {
        for s in [None, Some(&sk_s)] {
            assert_eq!(
                setup_sender(&pk_r, b"", Some(psk), s).err(),
                Some(HpkeError::InconsistentPsk)
            );
        }
        for s in [None, Some(&pk_s)] {
            assert_eq!(
                setup_receiver(&enc, &sk_r, b"", Some(psk), s).err(),
                Some(HpkeError::InconsistentPsk)
            );
        }
    }

    // A PSK shorter than 32 bytes is refused.
    let short = Psk {
        key: &key[..31],
        id: b"id",
    };
    assert_eq!(
        setup_sender(&pk_r, b"", Some(short), None).err(),
        Some(HpkeError::InvalidLength)
    );
    assert_eq!(
        setup_receiver(&enc, &sk_r, b"", Some(short), None).err(),
        Some(HpkeError::InvalidLength)
    );
}

#[test]
fn mismatched_psk_sender_or_mode_fails_to_open() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let sk_s = StaticSecret::random();
    let pk_s = PublicKey::from(&sk_s);
    let wrong_pk_s = PublicKey::from(&StaticSecret::random());
    let key = [0x42u8; 32];
    let other_key = [0x43u8; 32];
    let psk = Psk {
        key: &key,
        id: b"psk id",
    };
    let wrong_psk_key = Psk {
        key: &other_key,
        id: b"psk id",
    };
    let wrong_psk_id = Psk {
        key: &key,
        id: b"psk iD",
    };
    let info = b"info";
    let aad = b"aad";

    for (sender_psk, sender_sk) in [
        (None, None),
        (Some(psk), None),
        (None, Some(&sk_s)),
        (Some(psk), Some(&sk_s)),
    ] {
        let (enc, mut sctx) = setup_sender(&pk_r, info, sender_psk, sender_sk).unwrap();
        let ct = sctx.seal(aad, b"secret").unwrap();
        let right_pk_s = sender_sk.map(|_| &pk_s);

        // The matching receiver opens it.
        let mut rctx = setup_receiver(&enc, &sk_r, info, sender_psk, right_pk_s).unwrap();
        assert_eq!(rctx.open(aad, &ct).unwrap(), b"secret");

        // Every mismatching receiver fails.
        let mut wrong: Vec<(Option<Psk<'_>>, Option<&PublicKey>)> = vec![
            (None, None),
            (Some(psk), None),
            (None, Some(&pk_s)),
            (Some(psk), Some(&pk_s)),
            (Some(wrong_psk_key), right_pk_s),
            (Some(wrong_psk_id), right_pk_s),
            (sender_psk, Some(&wrong_pk_s)),
        ];
        wrong.retain(|(p, s)| {
            let same_psk = match (p, sender_psk) {
                (None, None) => true,
                (Some(a), Some(b)) => a.key == b.key && a.id == b.id,
                _ => false,
            };
            !(same_psk && *s == right_pk_s)
        });
        for (p, s) in wrong {
            let mut rctx = setup_receiver(&enc, &sk_r, info, p, s).unwrap();
            assert_eq!(rctx.open(aad, &ct), Err(HpkeError::OpenFailed));
            // A failed open does not advance the sequence number.
            assert_eq!(rctx.0.seq, 0);
        }
    }
}

// ---------------------------------------------------------------------------
// Contexts, sequence numbers, exports, keys
// ---------------------------------------------------------------------------

#[test]
fn multi_message_round_trip_all_modes() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let sk_s = StaticSecret::random();
    let pk_s = PublicKey::from(&sk_s);
    let key = [9u8; 40];
    let psk = Psk {
        key: &key,
        id: b"id",
    };
    for (p, with_sender) in [
        (None, false),
        (Some(psk), false),
        (None, true),
        (Some(psk), true),
    ] {
        let (enc, mut s) = setup_sender(&pk_r, b"i", p, with_sender.then_some(&sk_s)).unwrap();
        let mut r = setup_receiver(&enc, &sk_r, b"i", p, with_sender.then_some(&pk_s)).unwrap();
        let cts: Vec<Vec<u8>> = (0..5u8).map(|i| s.seal(&[i], &[i; 3]).unwrap()).collect();
        // Out of order fails and does not advance.
        assert_eq!(r.open(&[1], &cts[1]), Err(HpkeError::OpenFailed));
        for (i, ct) in (0..5u8).zip(&cts) {
            assert_eq!(r.open(&[i], ct).unwrap(), vec![i; 3]);
        }
        // Replay fails.
        assert_eq!(r.open(&[0], &cts[0]), Err(HpkeError::OpenFailed));
        assert_eq!(
            *s.export(b"ctx", 64).unwrap(),
            *r.export(b"ctx", 64).unwrap()
        );
        assert_ne!(
            *s.export(b"ctx", 32).unwrap(),
            *s.export(b"ctx2", 32).unwrap()
        );
    }
}

#[test]
fn message_limit() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let (enc, mut s) = setup_sender(&pk_r, b"", None, None).unwrap();
    let mut r = setup_receiver(&enc, &sk_r, b"", None, None).unwrap();

    // The last usable sequence number is 2^96 - 2.
    s.0.seq = SEQ_LIMIT - 1;
    r.0.seq = SEQ_LIMIT - 1;
    let nonce = s.0.current_nonce().unwrap();
    let expected: Vec<u8> =
        s.0.base_nonce
            .iter()
            .enumerate()
            .map(|(i, b)| if i == N_N - 1 { b ^ 0xfe } else { b ^ 0xff })
            .collect();
    assert_eq!(nonce.as_slice(), expected.as_slice());
    let ct = s.seal(b"", b"last").unwrap();
    assert_eq!(r.open(b"", &ct).unwrap(), b"last");
    assert_eq!(s.0.seq, SEQ_LIMIT);

    assert_eq!(
        s.seal(b"", b"one more"),
        Err(HpkeError::MessageLimitReached)
    );
    assert_eq!(r.open(b"", &ct), Err(HpkeError::MessageLimitReached));
    assert_eq!(s.0.seq, SEQ_LIMIT);
    assert_eq!(r.0.seq, SEQ_LIMIT);
    // Exports still work.
    assert_eq!(s.export(b"", 32).unwrap().len(), 32);
}

#[test]
fn export_lengths() {
    let sk_r = StaticSecret::random();
    let pk_r = PublicKey::from(&sk_r);
    let (enc, s) = setup_sender(&pk_r, b"", None, None).unwrap();
    let r = setup_receiver(&enc, &sk_r, b"", None, None).unwrap();
    assert!(s.export(b"x", 0).unwrap().is_empty());
    let max = 255 * 32;
    assert_eq!(*s.export(b"x", max).unwrap(), *r.export(b"x", max).unwrap());
    assert_eq!(
        s.export(b"x", max + 1).err(),
        Some(HpkeError::InvalidLength)
    );
    assert_eq!(
        r.export(b"x", usize::MAX).err(),
        Some(HpkeError::InvalidLength)
    );
    // A shorter export is a prefix of a longer one (HKDF-Expand), but the
    // length is bound in the label, so it is not here.
    let short = s.export(b"x", 16).unwrap();
    let long = s.export(b"x", 32).unwrap();
    assert_ne!(short.as_slice(), &long[..16]);
}

#[test]
fn derive_key_pair_checks() {
    assert_eq!(
        derive_key_pair(&[0u8; 31]).err(),
        Some(HpkeError::InvalidLength)
    );
    let (sk1, pk1) = derive_key_pair(&[1u8; 32]).unwrap();
    let (sk2, pk2) = derive_key_pair(&[1u8; 32]).unwrap();
    assert_eq!(sk1.to_bytes(), sk2.to_bytes());
    assert_eq!(pk1, pk2);
    assert_eq!(pk1, PublicKey::from(&sk1));
    let (_, pk3) = derive_key_pair(&[2u8; 64]).unwrap();
    assert_ne!(pk1, pk3);
}

#[test]
fn suite_ids_and_constants() {
    assert_eq!(&KEM_SUITE_ID, b"KEM\x00\x20");
    assert_eq!(&HPKE_SUITE_ID, b"HPKE\x00\x20\x00\x01\x00\x03");
    assert_eq!(SEQ_LIMIT, (1u128 << 96) - 1);
}

#[test]
fn debug_does_not_show_secrets() {
    let v = a21_vector();
    let (sk_e, _) = derive_key_pair(&v.ikm_e).unwrap();
    let (sk_r, pk_r) = derive_key_pair(&v.ikm_r).unwrap();
    let (enc, s) = setup_sender_with_ephemeral(&pk_r, &v.info, None, None, &sk_e).unwrap();
    let r = setup_receiver(&enc, &sk_r, &v.info, None, None).unwrap();
    let key = b"a very secret pre-shared key 123";
    let psk = Psk { key, id: b"id" };
    let dumps = [format!("{s:?}"), format!("{r:?}"), format!("{psk:?}")];
    for dump in &dumps {
        for secret in [A21_KEY, A21_BASE_NONCE, A21_EXPORTER_SECRET] {
            assert!(!dump.contains(secret), "{dump}");
        }
        assert!(!dump.contains("secret"), "{dump}");
        assert!(!dump.contains("key"), "{dump}");
        assert!(!dump.contains("nonce"), "{dump}");
    }
    assert_eq!(dumps[0], "SenderContext { seq: 0, .. }");
    assert_eq!(dumps[1], "ReceiverContext { seq: 0, .. }");
    assert_eq!(dumps[2], "Psk { .. }");
}
