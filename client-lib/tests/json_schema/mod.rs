//! The schema of `caucus --json` (`docs/cli-json.schema.json`), to check
//! every line a test sees a command print.
#![allow(dead_code)] // each test crate uses part of it

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The schema document, as committed.
pub(crate) fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli-json.schema.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn build(schema: &Value) -> jsonschema::Validator {
    jsonschema::meta::validate(schema)
        .unwrap_or_else(|e| panic!("not a valid JSON Schema (draft 2020-12): {e}"));
    jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("{e}"))
}

/// The validator for one line of `--json` output.
pub(crate) fn lines() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| build(&schema()))
}

/// The validator for one line the daemon writes on its socket (its
/// `$defs/rpc_message`).
pub(crate) fn rpc() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema = schema();
        build(&json!({
            "$schema": schema["$schema"],
            "$defs": schema["$defs"],
            "$ref": "#/$defs/rpc_message",
        }))
    })
}

fn check(validator: &jsonschema::Validator, what: &str, value: &Value) {
    let errors = validator.iter_errors(value).into_errors();
    assert!(
        errors.is_empty(),
        "{what} does not match docs/cli-json.schema.json:\n{value}\n{errors}"
    );
}

/// Assert that `line` is a line `caucus --json` may print.
pub(crate) fn check_line(line: &Value) {
    check(lines(), "a --json line", line);
}

/// Assert that `message` is a line the daemon may write.
pub(crate) fn check_rpc(message: &Value) {
    check(rpc(), "a JSON-RPC message", message);
}
