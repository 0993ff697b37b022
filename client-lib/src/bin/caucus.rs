//! `caucus`: the command-line client.

fn main() {}
