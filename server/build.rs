//! Rebuild the relay whenever the web client it embeds (`web/dist`, see
//! `src/web.rs`) changes, a file added or removed included: the embedding
//! macro alone only notices changes to the files it already embedded.

fn main() {
    println!("cargo:rerun-if-changed=../web/dist");
}
