//! Documents are sealed exactly as age v1 payloads (protocol.md 9.6): every
//! STREAM vector of the age test kit (C2SP/CCTV, `tests/vectors/age/`)
//! opens, or fails, as age's own reader says, and each one that opens seals
//! again to the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;

use caucus_protocol::codec::Canonical;
use caucus_protocol::document::{CHUNK_SIZE, DocumentKey, Hasher, Stream, TAG_LEN};

struct Vector {
    name: String,
    expect: String,
    payload_sha256: String,
    file_key: Vec<u8>,
    age_file: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/age");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "LICENSE" {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
        let head = std::str::from_utf8(&bytes[..split]).unwrap();
        let mut body = bytes[split + 2..].to_vec();
        let field = |key: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(str::to_owned)
        };
        if field("compressed").as_deref() == Some("zlib") {
            let mut inflated = Vec::new();
            flate2::read::ZlibDecoder::new(&body[..])
                .read_to_end(&mut inflated)
                .unwrap();
            body = inflated;
        }
        let expect = field("expect").unwrap();
        if expect == "header failure" {
            continue; // age's header (a nonce too short, here), which Caucus does not use
        }
        out.push(Vector {
            name,
            expect,
            payload_sha256: field("payload").unwrap(),
            file_key: hex::decode(field("file key").unwrap()).unwrap(),
            age_file: body,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The payload after age's header: the header ends with the line that starts
/// `--- ` (its MAC).
fn payload(age_file: &[u8]) -> &[u8] {
    let mut at = 0;
    loop {
        let end = at + age_file[at..].iter().position(|&b| b == b'\n').unwrap();
        if age_file[at..].starts_with(b"--- ") {
            return &age_file[end + 1..];
        }
        at = end + 1;
    }
}

/// age's reader over [`Stream::open`]: chunks of 64 KiB + 16 read in turn; a
/// short read is the last chunk; a full one is tried as a middle chunk, then
/// as the last, which must then be followed by nothing (but is released). Returns what it
/// released and whether it reached the end.
fn age_read(file_key: &[u8], payload: &[u8]) -> (Vec<u8>, bool) {
    let mut released = Vec::new();
    if payload.len() < 16 {
        return (released, false);
    }
    let (nonce, mut rest) = payload.split_at(16);
    let key = DocumentKey::from_bytes(&[file_key, nonce].concat()).unwrap();
    let stream = Stream::new(&key);
    let full = CHUNK_SIZE + TAG_LEN;
    for index in 0u32.. {
        if rest.is_empty() {
            return (released, false); // no chunk marked last
        }
        let chunk = &rest[..rest.len().min(full)];
        rest = &rest[chunk.len()..];
        if chunk.len() < full {
            return match stream.open(index, true, chunk) {
                Ok(p) => {
                    released.extend_from_slice(&p);
                    (released, true)
                }
                Err(_) => (released, false),
            };
        }
        match stream.open(index, false, chunk) {
            Ok(p) => released.extend_from_slice(&p),
            Err(_) => {
                // The last chunk is released; anything after it is an error.
                return match stream.open(index, true, chunk) {
                    Ok(p) => {
                        released.extend_from_slice(&p);
                        (released, rest.is_empty())
                    }
                    Err(_) => (released, false),
                };
            }
        }
    }
    unreachable!()
}

#[test]
fn every_age_stream_vector_opens_as_age_says() {
    let vectors = vectors();
    let mut checked = 0;
    for v in &vectors {
        let (released, complete) = age_read(&v.file_key, payload(&v.age_file));
        assert_eq!(
            hex::encode(Hasher::digest(&released).0),
            v.payload_sha256,
            "{}: the plaintext released",
            v.name
        );
        assert_eq!(complete, v.expect == "success", "{}: {}", v.name, v.expect);
        checked += 1;
    }
    assert_eq!(
        checked, 27,
        "the vectors with a file key copied from C2SP/CCTV"
    );
}

#[test]
fn every_age_stream_vector_that_opens_seals_to_the_same_bytes() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v.expect == "success") {
        let payload = payload(&v.age_file);
        let (released, _) = age_read(&v.file_key, payload);
        let (nonce, ciphertext) = payload.split_at(16);
        let key = DocumentKey::from_bytes(&[&v.file_key[..], nonce].concat()).unwrap();
        let stream = Stream::new(&key);
        let pieces: Vec<&[u8]> = if released.is_empty() {
            vec![&[]]
        } else {
            released.chunks(CHUNK_SIZE).collect()
        };
        let mut sealed = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            sealed.extend(stream.seal(i as u32, last, piece).unwrap());
        }
        assert_eq!(sealed, ciphertext, "{}", v.name);
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");
}

/// Appendix A.13 of `docs/protocol.md`, recomputed from its inputs: the
/// payload key and the chunk by hand (HKDF from its HMAC definition,
/// ChaCha20-Poly1305 with age's nonce) and by the crate, which must agree.
#[test]
fn appendix_a13_is_what_the_code_computes() {
    use caucus_protocol::content::{Content, Sharing};
    use caucus_protocol::document::{DocumentRef, Sealer};
    use caucus_protocol::ids::FileId;
    use chacha20poly1305::ChaCha20Poly1305;
    use chacha20poly1305::aead::{Aead, KeyInit};
    use ring::hmac;

    const DOC: &str = include_str!("../../docs/protocol.md");
    let section = &DOC[DOC.find("\n### A.13 ").expect("docs/protocol.md has A.13")..];
    let wrapped = |bytes: &[u8]| {
        let hex = hex::encode(bytes);
        let lines: Vec<&str> = hex
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!("```text\n{}\n```", lines.join("\n"))
    };
    let mut missing = Vec::new();
    let mut expect = |what: &str, bytes: &[u8]| {
        let block = wrapped(bytes);
        if !section.contains(&block) {
            missing.push(format!("{what} ({} bytes):\n{block}", bytes.len()));
        }
    };

    let file = b"Position statement of the claimant, 3 March.\n";
    let (file_key, nonce) = ([0xc0u8; 16], [0xc1u8; 16]);
    let key = DocumentKey::from_bytes(&[file_key, nonce].concat()).unwrap();
    // HKDF-SHA256 by its definition: Extract, then one block of Expand.
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &nonce), &file_key);
    let payload_key = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()),
        b"payload\x01",
    );
    let mut padded = file.to_vec();
    padded.resize(CHUNK_SIZE, 0);
    let mut chunk_nonce = [0u8; 12];
    chunk_nonce[11] = 1; // chunk 0, the last
    let payload_key: [u8; 32] = payload_key.as_ref().try_into().unwrap();
    let by_hand = ChaCha20Poly1305::new(&payload_key.into())
        .encrypt(&chunk_nonce.into(), &padded[..])
        .unwrap();
    let sealer = Sealer::new(&key, file.len() as u64).unwrap();
    assert_eq!(sealer.layout().chunks(), 1);
    let chunk = sealer.seal_chunk(0, file).unwrap();
    assert_eq!(
        chunk, by_hand,
        "the crate seals what the document describes"
    );

    let reference = DocumentRef {
        file: FileId([0xdd; 16]),
        key,
        size: file.len() as u64,
        hash: Hasher::digest(file),
        title: "Position statement".into(),
        name: "statement.txt".into(),
        media_type: "text/plain".into(),
    };
    let content = Content::Document {
        sharing: Sharing::MediatorOnly,
        document: reference.clone(),
    };
    expect("the file", file);
    expect("its SHA-256", &reference.hash.0);
    expect("the payload key", &payload_key);
    expect("the nonce of chunk 0", &chunk_nonce);
    expect("the chunk's first 64 bytes", &chunk[..64]);
    expect("the chunk's tag", &chunk[chunk.len() - TAG_LEN..]);
    expect("the SHA-256 of the whole chunk", &Hasher::digest(&chunk).0);
    expect("canon(DocumentRef)", &reference.to_bytes());
    expect("canon(Content::Document)", &content.to_bytes());
    assert!(
        missing.is_empty(),
        "docs/protocol.md A.13 is stale; expected there:\n\n{}\n",
        missing.join("\n\n")
    );
}
