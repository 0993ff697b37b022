//! `ServerFrame`: how the client library reads every frame from the
//! (untrusted) relay, as `serde_json::from_str::<ServerFrame>`. JSON is not
//! canonical, so the property is: a frame that parses, serialized and parsed
//! again, is the same frame.
#![no_main]

use caucus_protocol::wire::ServerFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = serde_json::from_slice::<ServerFrame>(data) else {
        return;
    };
    let json = serde_json::to_string(&frame).expect("a frame serializes");
    let again: ServerFrame = serde_json::from_str(&json).expect("a serialized frame parses");
    assert_eq!(again, frame, "parse(serialize(parse(x))) != parse(x)");
    assert_eq!(
        serde_json::to_string(&again).expect("a frame serializes"),
        json,
        "serializing is not deterministic"
    );
});
