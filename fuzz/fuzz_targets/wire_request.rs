//! `wire::parse_request`: how the relay reads every client text frame,
//! before authentication. JSON is not canonical (field order, spacing,
//! escapes, unknown fields), so the property is the weaker one: a request
//! that parses, serialized again and parsed again, is the same request, and
//! serializing it is deterministic.
#![no_main]

use caucus_protocol::wire::{ErrorCode, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_request(text) {
        Ok(request) => {
            assert_eq!(request.v, 1, "only version 1 parses");
            let json = serde_json::to_string(&request).expect("a request serializes");
            let again = parse_request(&json).expect("a serialized request parses");
            assert_eq!(again, request, "parse(serialize(parse(x))) != parse(x)");
            let json2 = serde_json::to_string(&again).expect("a request serializes");
            assert_eq!(json, json2, "serializing is not deterministic");
        }
        Err(e) => {
            // Not JSON, or not an object: there is no id to echo.
            if serde_json::from_str::<serde_json::Value>(text).map_or(true, |v| !v.is_object()) {
                assert_eq!(e.code, ErrorCode::Malformed);
                assert_eq!(e.id, None);
            }
            let _ = e.reply();
        }
    }
});
